import { describe, expect, it } from "vitest";
import { newAuditRecord } from "../../../src/audit/record.js";
import { GatewayMetrics } from "../../../src/telemetry/metrics.js";
import { parseExposition, sampleValue } from "../../helpers/prometheus.js";

describe("GatewayMetrics exposition", () => {
  it("renders cumulative histogram buckets, sum and count", async () => {
    const metrics = new GatewayMetrics();
    const record = newAuditRecord(
      "2026-01-01T00:00:00.000Z",
      "test-1",
      "/mcp",
      null,
      "tools/list",
      "127.0.0.1",
    );
    record.status = 200;
    for (const seconds of [0.0005, 0.003, 0.003, 2]) {
      metrics.requestStarted();
      metrics.requestFinished("/mcp", record, seconds);
    }
    const samples = parseExposition((await metrics.exposition()).body);
    const bucket = (le: string) =>
      sampleValue(samples, "mcpgw_request_duration_seconds_bucket", {
        route: "/mcp",
        method: "tools/list",
        le,
      });
    expect(bucket("0.001")).toBe(1);
    expect(bucket("0.005")).toBe(3);
    expect(bucket("1")).toBe(3);
    expect(bucket("2.5")).toBe(4);
    expect(bucket("+Inf")).toBe(4);
    expect(sampleValue(samples, "mcpgw_request_duration_seconds_count")).toBe(4);
    expect(sampleValue(samples, "mcpgw_request_duration_seconds_sum")).toBeCloseTo(2.0065);
    expect(sampleValue(samples, "mcpgw_requests_in_flight")).toBe(0);
  });

  it("escapes label values and counts unknown methods as other", async () => {
    const metrics = new GatewayMetrics();
    const record = newAuditRecord(
      "2026-01-01T00:00:00.000Z",
      "test-1",
      "/mcp",
      null,
      'evil"\\\nmethod',
      null,
    );
    metrics.requestFinished('/a"b', record, 0.01);
    const { body } = await metrics.exposition();
    expect(body).toContain('route="/a\\"b",method="other"');
    expect(
      sampleValue(parseExposition(body), "mcpgw_requests_total", {
        route: '/a"b',
        method: "other",
      }),
    ).toBe(1);
  });
});
