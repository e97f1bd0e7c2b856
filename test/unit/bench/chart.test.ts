import { describe, expect, it } from "vitest";
import { renderChartSvg } from "../../../bench/chart.js";
import type { LoadOutcome } from "../../../bench/load.js";
import { type BenchReport, renderMarkdown, type TargetResult } from "../../../bench/report.js";
import type { Settings } from "../../../bench/settings.js";
import type { TargetDefinition } from "../../../bench/targets.js";

function result(
  name: string,
  cpuMicrosPerRequest: number,
  requestsPerSecond: number,
): TargetResult {
  const load: LoadOutcome = {
    sent: 1000,
    completed: 1000,
    errors: 0,
    non2xx: 0,
    mismatches: 0,
    statusCounts: { "200": 1000 },
    requestsPerSecond,
    latencyP50Ms: 0.4,
    latencyP99Ms: 1.5,
  };
  return {
    target: { name, description: `the ${name} target` } as TargetDefinition,
    round: 1,
    load,
    cpuMicrosPerRequest,
    findings: [],
  };
}

function report(results: TargetResult[]): BenchReport {
  const settings: Settings = {
    durationSeconds: 5,
    warmupSeconds: 2,
    connections: 10,
    rounds: 3,
    only: undefined,
  };
  return {
    date: new Date("2026-12-04T15:00:36.608Z"),
    machine: { node: "v24.22.3", cpuModel: "AMD EPYC", cores: 2, os: "Linux 6.18.44" },
    settings,
    results,
    comparisons: [],
  };
}

const sample = report([
  result("direct", 14.4, 63987.2),
  result("passthrough", 40.9, 23224),
  result("mcpgw", 43.4, 21100.6),
  result("node-<fastify> & co", 231.8, 5626),
]);

/** The bars' attributes, in document order. */
function bars(svg: string): { width: number; fill: string }[] {
  return [...svg.matchAll(/<rect class="bar"[^>]*\/>/g)].map(([element]) => ({
    width: Number(/ width="([^"]+)"/.exec(element)?.[1]),
    fill: /fill="([^"]+)"/.exec(element)?.[1] ?? "",
  }));
}

describe("renderChartSvg", () => {
  it("is one self-contained SVG document", () => {
    const svg = renderChartSvg(sample);
    expect(svg.startsWith("<svg ")).toBe(true);
    expect(svg).toContain('xmlns="http://www.w3.org/2000/svg"');
    expect(svg).toContain('font-family="sans-serif"');
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    expect(svg).not.toMatch(/<script|href=|@import|url\(/i);
    // Every element opened is closed.
    const opened = [...svg.matchAll(/<([a-z]+)[\s>]/g)].filter(
      (match) => !svg.slice(match.index).split(">")[0]?.endsWith("/"),
    );
    const closed = [...svg.matchAll(/<\/([a-z]+)>/g)];
    expect(closed.map((match) => match[1]).sort()).toEqual(opened.map((match) => match[1]).sort());
  });

  it("draws one bar per target, scaled to the largest CPU per request", () => {
    const drawn = bars(renderChartSvg(sample));
    expect(drawn).toHaveLength(4);
    const full = Math.max(...drawn.map(({ width }) => width));
    expect(drawn[3]?.width).toBe(full);
    const cpu = sample.results.map(({ cpuMicrosPerRequest }) => cpuMicrosPerRequest);
    for (const [index, { width }] of drawn.entries()) {
      expect(width / full).toBeCloseTo((cpu[index] ?? 0) / 231.8, 3);
    }
  });

  it("colours mcpgw apart from the others", () => {
    const fills = bars(renderChartSvg(sample)).map(({ fill }) => fill);
    expect(fills[2]).not.toBe(fills[0]);
    expect(new Set([fills[0], fills[1], fills[3]]).size).toBe(1);
  });

  it("prints each value, the requests per second and the run's date, Node and machine", () => {
    const svg = renderChartSvg(sample);
    for (const value of ["14.4 µs", "40.9 µs", "43.4 µs", "231.8 µs"]) {
      expect(svg).toContain(`>${value}</text>`);
    }
    for (const rate of ["63987", "23224", "21101", "5626"])
      expect(svg).toContain(`>${rate}</text>`);
    expect(svg).toContain("2026-12-04");
    expect(svg).toContain("Node v24.22.3, AMD EPYC × 2 cores, Linux 6.18.44");
  });

  it("escapes the text it puts in", () => {
    const svg = renderChartSvg(sample);
    expect(svg).toContain(">node-&lt;fastify&gt; &amp; co</text>");
    expect(svg).not.toContain("<fastify>");
    const quoted = renderChartSvg(report([result(`"it's"`, 1, 1)]));
    expect(quoted).toContain(">&quot;it&apos;s&quot;</text>");
  });

  it("gives the same string for the same report, and grows with the targets", () => {
    expect(renderChartSvg(sample)).toBe(renderChartSvg(structuredClone(sample)));
    const height = (svg: string) => Number(/^<svg [^>]* height="(\d+)"/.exec(svg)?.[1]);
    const one = renderChartSvg(report([result("direct", 10, 100)]));
    expect(height(renderChartSvg(sample))).toBeGreaterThan(height(one));
  });
});

describe("renderMarkdown", () => {
  it("shows the run's chart right after the results table", () => {
    const lines = renderMarkdown(sample).split("\n");
    const image =
      "![CPU per request and throughput of each target, from this run](images/benchmarks-node24.svg)";
    const at = lines.indexOf(image);
    expect(at).toBeGreaterThan(0);
    expect(lines[at - 2]?.startsWith("| node-<fastify> & co |")).toBe(true);
  });
});
