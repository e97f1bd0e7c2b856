/**
 * The operator's metrics tools against a real Prometheus (built from its Go module by
 * test/tools/build.sh), scraping the built gateway every second: every query of the Grafana
 * dashboard (deploy/grafana/) returns data with the labels its legend names, and every alert of
 * deploy/prometheus/alerts.yml loads, evaluates, and fires when its fault is provoked.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parse } from "yaml";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { type Daemon, killDaemons, startDaemon } from "../helpers/daemon.js";
import { unusedPortUrl } from "../helpers/fake-upstreams.js";
import { type JwksServer, makeKey, startJwksServer } from "../helpers/jwks-server.js";
import { cheapHash } from "../helpers/keys.js";
import { POST_HEADERS, TOOLS_LIST } from "../helpers/mcp-client.js";
import { startPrometheus, type TestPrometheus } from "../helpers/prometheus-server.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const DASHBOARD = path.join(ROOT, "deploy/grafana/mcpgw-dashboard.json");
const ALERTS = path.join(ROOT, "deploy/prometheus/alerts.yml");
const KEY = "prometheus-suite-key-0123456789abcdef";

/** Grafana's interval variables, as it would set them for a 1 s scrape and a short range. */
const GRAFANA_VARIABLES: Record<string, string> = {
  $__rate_interval: "10s",
  $__interval: "5s",
  $__range: "5m",
};

interface Panel {
  title: string;
  targets?: { expr: string; legendFormat?: string }[];
  panels?: Panel[];
}

function dashboardQueries(): { panel: string; expr: string; labels: string[] }[] {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as { panels: Panel[] };
  const walk = (panels: Panel[]): Panel[] =>
    panels.flatMap((panel) => [panel, ...walk(panel.panels ?? [])]);
  return walk(dashboard.panels).flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({
      panel: panel.title,
      expr: target.expr.replace(/\$__\w+/g, (name) => GRAFANA_VARIABLES[name] ?? name),
      // The labels the legend shows: {{status}} needs a `status` label on every series.
      labels: [...(target.legendFormat ?? "").matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map(
        (match) => match[1] as string,
      ),
    })),
  );
}

let upstream: ExampleServer;
let jwks: JwksServer;
let daemon: Daemon;
let prometheus: TestPrometheus;
let base: Record<string, unknown>;
let traffic: { stop(): Promise<void> } | undefined;

/** Requests until stopped: answered (200), refused (401) and failed upstream (502). */
function startTraffic(url: string) {
  let running = true;
  const origin = new URL(url).origin;
  const send = (where: string, key: string) =>
    fetch(where, {
      method: "POST",
      headers: { ...POST_HEADERS, authorization: `Bearer ${key}` },
      body: TOOLS_LIST,
    }).then((res) => res.arrayBuffer());
  const loop = (async () => {
    while (running) {
      await Promise.all([
        send(url, KEY),
        send(url, KEY),
        send(url, "not-a-key-0123456789abcdef"),
        send(`${origin}/down/mcp`, KEY),
      ]);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
    },
  };
}

beforeAll(async () => {
  const [keyHash, key] = await Promise.all([cheapHash(KEY), makeKey("RS256", "k1")]);
  [upstream, jwks] = await Promise.all([
    startExampleServer({ jsonResponse: true }),
    startJwksServer([key]),
  ]);
  base = {
    auth: {
      keys: [{ id: "ops", hash: keyHash }],
      // The JWKS panel's series: fetched at start, then every second.
      oauth: {
        enabled: true,
        issuer: jwks.issuer,
        audience: "mcpgw-test",
        jwks_url: jwks.url,
        jwks_cache_ttl: "1s",
      },
    },
    // A route whose upstream is down: the 5xx of the error-rate alert.
    routes: [{ path: "/down/mcp", upstream: { url: await unusedPortUrl() } }],
  };
  daemon = await startDaemon(upstream.url, base);
  prometheus = await startPrometheus([new URL(daemon.url).host], [ALERTS]);
  await prometheus.waitForTargets();
  traffic = startTraffic(daemon.url);
}, 60_000);

afterAll(async () => {
  await traffic?.stop();
  killDaemons();
  await Promise.all([prometheus?.stop(), upstream?.close(), jwks?.close()]);
});

describe("the Grafana dashboard", () => {
  it("has queries to check", () => {
    expect(dashboardQueries().length).toBeGreaterThanOrEqual(19);
  });

  it("returns data for every panel's query, with the labels its legend shows", async () => {
    // A reload (of a changed file), so that the reload panel has an increase to show.
    await daemon.write({ ...base, shutdown_timeout: "11s" });
    daemon.bin.child.kill("SIGHUP");
    await daemon.bin.waitForLog((line) => line.msg === "config reloaded");
    const missing = new Map<string, string>();
    await vi.waitFor(
      async () => {
        missing.clear();
        for (const { panel, expr, labels } of dashboardQueries()) {
          const samples = await prometheus.query(expr);
          const usable = samples.filter((sample) => !Number.isNaN(Number(sample.value[1])));
          if (usable.length === 0) {
            missing.set(`${panel}: ${expr}`, "no data");
            continue;
          }
          const unlabelled = labels.filter((label) =>
            usable.some((sample) => sample.metric[label] === undefined),
          );
          if (unlabelled.length > 0) {
            missing.set(`${panel}: ${expr}`, `series without ${unlabelled.join(", ")}`);
          }
        }
        expect(Object.fromEntries(missing)).toEqual({});
      },
      { timeout: 30_000, interval: 1_000 },
    );
    // What the legends show: the statuses and auth results of the traffic.
    const byStatus = await prometheus.query("sum by (status) (rate(mcpgw_requests_total[10s]))");
    expect(byStatus.map((sample) => sample.metric.status).sort()).toEqual(
      expect.arrayContaining(["200", "401", "502"]),
    );
    const refusals = await prometheus.query(
      'sum by (auth_result) (rate(mcpgw_requests_total{auth_result!="ok"}[10s]))',
    );
    expect(refusals.map((sample) => sample.metric.auth_result)).toContain("unknown_key");
  }, 60_000);
});

describe("the alerting rules", () => {
  interface Rule {
    alert: string;
    expr: string;
  }
  const rules = (
    parse(readFileSync(ALERTS, "utf8")) as { groups: { rules: Rule[] }[] }
  ).groups.flatMap((group) => group.rules);

  it("load into Prometheus and evaluate without error", async () => {
    await vi.waitFor(
      async () => {
        const loaded = await prometheus.rules();
        expect(loaded.map((rule) => rule.name).sort()).toEqual(
          rules.map((rule) => rule.alert).sort(),
        );
        expect(loaded.filter((rule) => rule.health !== "ok")).toEqual([]);
      },
      { timeout: 15_000, interval: 500 },
    );
  });

  it("watch series that exist: each expression without its threshold returns data", async () => {
    const empty: string[] = [];
    for (const rule of rules) {
      const signal = rule.expr.replace(/\s*(==|!=|>=|<=|>|<)\s*[\d.]+\s*$/, "");
      expect(signal).not.toBe(rule.expr);
      if ((await prometheus.query(signal)).length === 0) empty.push(`${rule.alert}: ${signal}`);
    }
    expect(empty).toEqual([]);
  });

  it("fire on a failed reload, failing JWKS fetches, a pending restart and 5xx answers", async () => {
    // A broken file: the reload fails and the last good config keeps serving.
    await daemon.write({ ...base, auth: "not a mapping" });
    daemon.bin.child.kill("SIGHUP");
    await daemon.bin.waitForLog((line) => line.msg.startsWith("config reload failed"));
    // A restart-only change, applied by no restart.
    await daemon.write({ ...base, metrics: { enabled: false } });
    daemon.bin.child.kill("SIGHUP");
    await daemon.bin.waitForLog((line) => line.msg === "restart required for: metrics");
    // The identity provider answers 500 to the refreshes, every second.
    jwks.mode = "error";
    try {
      const expected = {
        McpgwConfigReloadFailed: "firing",
        McpgwJwksUnreachable: "firing",
        // `for: 1h`, `for: 5m`: true now, firing later.
        McpgwRestartPending: "pending",
        McpgwServerErrors: "pending",
      };
      await vi.waitFor(
        async () => {
          const states = Object.fromEntries(
            (await prometheus.rules()).map((rule) => [rule.name, rule.state]),
          );
          expect(states).toMatchObject(expected);
          // Nothing was lost or failed to be written.
          expect(states).toMatchObject({
            McpgwAuditWriteErrors: "inactive",
            McpgwAuditRecordsLost: "inactive",
          });
        },
        { timeout: 30_000, interval: 500 },
      );
    } finally {
      jwks.mode = "ok";
    }
  }, 60_000);
});
