import { describe, expect, it } from "vitest";
import { mergeExpositions } from "../../../src/telemetry/merge-exposition.js";

const worker = (requests: number, generation: number, lag: number, extra = "") =>
  [
    "# HELP mcpgw_requests_total Requests to the MCP endpoint.",
    "# TYPE mcpgw_requests_total counter",
    `mcpgw_requests_total{route="/mcp",method="tools/list"} ${requests}`,
    extra,
    "# HELP mcpgw_request_duration_seconds Time until the response finished.",
    "# TYPE mcpgw_request_duration_seconds histogram",
    `mcpgw_request_duration_seconds_bucket{route="/mcp",le="0.005"} ${requests}`,
    `mcpgw_request_duration_seconds_bucket{route="/mcp",le="+Inf"} ${requests}`,
    `mcpgw_request_duration_seconds_sum{route="/mcp"} ${requests / 1000}`,
    `mcpgw_request_duration_seconds_count{route="/mcp"} ${requests}`,
    "# HELP mcpgw_config_generation The config generation serving requests.",
    "# TYPE mcpgw_config_generation gauge",
    `mcpgw_config_generation ${generation}`,
    "# HELP mcpgw_nodejs_eventloop_lag_p99_seconds The 99th percentile of the event loop lag.",
    "# TYPE mcpgw_nodejs_eventloop_lag_p99_seconds gauge",
    `mcpgw_nodejs_eventloop_lag_p99_seconds ${lag}`,
    "# HELP mcpgw_process_start_time_seconds Start time of the process.",
    "# TYPE mcpgw_process_start_time_seconds gauge",
    `mcpgw_process_start_time_seconds ${1_700_000_000 + generation}`,
    "",
  ]
    .filter((line, index, all) => line !== "" || index === all.length - 1)
    .join("\n");

describe("mergeExpositions", () => {
  it("adds counters and histograms up, series by series", () => {
    const merged = mergeExpositions([worker(3, 2, 0.01), worker(4, 2, 0.02)]);
    expect(merged).toContain('mcpgw_requests_total{route="/mcp",method="tools/list"} 7\n');
    expect(merged).toContain('mcpgw_request_duration_seconds_bucket{route="/mcp",le="+Inf"} 7\n');
    expect(merged).toContain('mcpgw_request_duration_seconds_count{route="/mcp"} 7\n');
    expect(merged).toContain('mcpgw_request_duration_seconds_sum{route="/mcp"} 0.007\n');
  });

  it("keeps one value of the gauges that are the same fact in every worker", () => {
    const merged = mergeExpositions([worker(1, 3, 0.05), worker(1, 2, 0.01)]);
    // The oldest generation still serving, the worst lag, the earliest start.
    expect(merged).toContain("mcpgw_config_generation 2\n");
    expect(merged).toContain("mcpgw_nodejs_eventloop_lag_p99_seconds 0.05\n");
    expect(merged).toContain("mcpgw_process_start_time_seconds 1700000002\n");
  });

  it("states each family's HELP and TYPE once, with the series only one worker has beside the others", () => {
    const onlyOne = [`mcpgw_requests_total{route="/mcp",method="tools/call"} 5`].join("\n");
    const merged = mergeExpositions([worker(1, 1, 0), worker(2, 1, 0, onlyOne)]);
    const lines = merged.trimEnd().split("\n");
    expect(lines.filter((line) => line === "# TYPE mcpgw_requests_total counter")).toHaveLength(1);
    const family = lines.indexOf("# TYPE mcpgw_requests_total counter");
    expect(lines.slice(family + 1, family + 3)).toEqual([
      'mcpgw_requests_total{route="/mcp",method="tools/list"} 3',
      'mcpgw_requests_total{route="/mcp",method="tools/call"} 5',
    ]);
  });

  it("keeps label values with spaces whole", () => {
    const text = [
      "# TYPE mcpgw_rate_limited_total counter",
      'mcpgw_rate_limited_total{limit="per client"} 2',
      "",
    ].join("\n");
    expect(mergeExpositions([text, text])).toContain(
      'mcpgw_rate_limited_total{limit="per client"} 4\n',
    );
  });
});
