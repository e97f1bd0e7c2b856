import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { type RunningServer, startHttpServer } from "../helpers/fake-upstreams.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import {
  type JwksServer,
  makeKey,
  type SigningKey,
  signToken,
  startJwksServer,
} from "../helpers/jwks-server.js";
import { cheapHash } from "../helpers/keys.js";
import { INITIALIZE, POST_HEADERS } from "../helpers/mcp-client.js";
import { sampleValue, scrape } from "../helpers/prometheus.js";

const KEY = "metrics-suite-key-0123456789";
const AUDIENCE = "mcpgw-metrics";

let upstream: ExampleServer;
let jwks: JwksServer;
let key: SigningKey;
let keyHash: string;

beforeAll(async () => {
  key = await makeKey("ES256");
  [upstream, jwks, keyHash] = await Promise.all([
    startExampleServer(),
    startJwksServer([key]),
    cheapHash(KEY),
  ]);
});

afterAll(async () => {
  await upstream.close();
  await jwks.close();
});

function config(extra: Record<string, unknown> = {}) {
  return {
    upstream: { url: upstream.url },
    auth: {
      keys: [{ id: "metrics", hash: keyHash }],
      oauth: { enabled: true, issuer: jwks.issuer, audience: AUDIENCE, jwks_url: jwks.url },
    },
    ...extra,
  };
}

const send = async (url: string, authorization?: string, body = INITIALIZE) => {
  const headers: Record<string, string> = { ...POST_HEADERS };
  if (authorization) headers.authorization = authorization;
  const res = await fetch(url, { method: "POST", headers, body });
  await res.text();
  return res.status;
};

describe("GET /metrics", () => {
  let gw: TestGateway;
  let metricsUrl: string;

  beforeAll(async () => {
    gw = await startGateway(config());
    metricsUrl = new URL("/metrics", gw.url).href;
  });

  afterAll(async () => {
    await gw.stop();
  });

  it("counts requests by route, method, auth type, auth result and status", async () => {
    const token = await signToken(key, jwks.issuer, AUDIENCE);
    expect(await send(gw.url, `Bearer ${KEY}`)).toBe(200);
    expect(await send(gw.url, `Bearer ${KEY}`)).toBe(200);
    expect(await send(gw.url)).toBe(401);
    expect(await send(gw.url, `Bearer ${token}`)).toBe(200);
    expect(await send(gw.url, `Bearer ${token}`)).toBe(200);
    await send(gw.url, `Bearer ${KEY}`, '{"jsonrpc":"2.0","id":9,"method":"made/up"}');

    const samples = await scrape(metricsUrl);
    const requests = (labels: Record<string, string>) =>
      sampleValue(samples, "mcpgw_requests_total", { route: "/mcp", ...labels });
    expect(
      requests({ method: "initialize", auth_type: "api_key", auth_result: "ok", status: "200" }),
    ).toBe(2);
    expect(
      requests({ method: "initialize", auth_type: "oauth", auth_result: "ok", status: "200" }),
    ).toBe(2);
    expect(requests({ auth_result: "missing", status: "401" })).toBe(1);
    // A method the gateway does not know is counted as "other": clients cannot mint series.
    expect(requests({ method: "other" })).toBe(1);
    expect(sampleValue(samples, "mcpgw_request_duration_seconds_count", { route: "/mcp" })).toBe(6);
    expect(sampleValue(samples, "mcpgw_upstream_duration_seconds_count", { route: "/mcp" })).toBe(
      5,
    );
    expect(sampleValue(samples, "mcpgw_requests_in_flight")).toBe(0);

    expect(sampleValue(samples, "mcpgw_argon2_runs_total")).toBe(1);
    expect(
      sampleValue(samples, "mcpgw_credential_cache_lookups_total", {
        cache: "api_key",
        result: "miss",
      }),
    ).toBe(1);
    expect(
      sampleValue(samples, "mcpgw_credential_cache_lookups_total", {
        cache: "api_key",
        result: "hit",
      }),
    ).toBe(2);
    expect(
      sampleValue(samples, "mcpgw_credential_cache_lookups_total", {
        cache: "access_token",
        result: "miss",
      }),
    ).toBe(1);
    expect(
      sampleValue(samples, "mcpgw_credential_cache_lookups_total", {
        cache: "access_token",
        result: "hit",
      }),
    ).toBe(1);
    expect(sampleValue(samples, "mcpgw_jwks_fetches_total", { result: "ok" })).toBe(1);
    expect(sampleValue(samples, "mcpgw_config_generation")).toBe(1);
    expect(sampleValue(samples, "mcpgw_process_cpu_seconds_total")).toBeGreaterThan(0);
  });

  it("exposes every series the shipped Grafana dashboard queries", async () => {
    const dashboard = await readFile(
      new URL("../../deploy/grafana/mcpgw-dashboard.json", import.meta.url),
      "utf8",
    );
    const queried = new Set(dashboard.match(/mcpgw_[a-z0-9_]+/g));
    const exposed = new Set((await scrape(metricsUrl)).map((sample) => sample.name));
    expect([...queried].filter((name) => !exposed.has(name))).toEqual([]);
  });

  it("counts reloads and shows the current generation", async () => {
    await gw.writeConfig(config({ log: { level: "warn" } }));
    await gw.gateway.reload("SIGHUP");
    await gw.writeConfig({ upstream: "not a mapping" });
    await gw.gateway.reload("SIGHUP");
    const samples = await scrape(metricsUrl);
    expect(sampleValue(samples, "mcpgw_config_reloads_total", { result: "ok" })).toBe(1);
    expect(sampleValue(samples, "mcpgw_config_reloads_total", { result: "failed" })).toBe(1);
    expect(sampleValue(samples, "mcpgw_config_generation")).toBe(2);
  });
});

describe("open streams, audit errors, and where metrics are served", () => {
  let streaming: RunningServer;
  let release: () => void = () => {};

  beforeAll(async () => {
    streaming = await startHttpServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(": open\n\n");
      release = () => res.end();
    });
  });

  afterAll(async () => {
    await streaming.close();
  });

  it("gauges open SSE streams and counts audit write errors", async () => {
    const gw = await startGateway({
      upstream: { url: streaming.url },
      auth: { keys: [{ id: "metrics", hash: keyHash }] },
      audit: { path: "/dev/full" },
    });
    const metricsUrl = new URL("/metrics", gw.url).href;
    const res = await fetch(gw.url, { headers: { authorization: `Bearer ${KEY}` } });
    const reader = res.body?.getReader();
    await reader?.read();
    expect(sampleValue(await scrape(metricsUrl), "mcpgw_sse_streams_open")).toBe(1);
    release();
    await reader?.cancel();
    // The stream's audit line is queued when the gateway sees it close; /dev/full refuses it.
    await vi.waitFor(async () => {
      await gw.gateway.audit.flush();
      const after = await scrape(metricsUrl);
      expect(sampleValue(after, "mcpgw_sse_streams_open")).toBe(0);
      expect(sampleValue(after, "mcpgw_audit_write_errors_total")).toBeGreaterThanOrEqual(1);
    });
    await gw.stop();
  });

  it("moves /metrics to metrics.listen, and serves none when disabled", async () => {
    const separate = await startGateway({ ...config(), metrics: { listen: "127.0.0.1:0" } });
    expect((await fetch(new URL("/metrics", separate.url))).status).toBe(404);
    const line = separate.logs.find((entry) => entry.msg === "metrics listening");
    const samples = await scrape(`http://127.0.0.1:${line?.port}/metrics`);
    expect(sampleValue(samples, "mcpgw_config_generation")).toBe(1);
    await separate.stop();

    const off = await startGateway({ ...config(), metrics: { enabled: false } });
    expect((await fetch(new URL("/metrics", off.url))).status).toBe(404);
    await off.stop();
  });
});
