import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { unusedPortUrl } from "../helpers/fake-upstreams.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { INITIALIZE, POST_HEADERS } from "../helpers/mcp-client.js";
import {
  type OtlpReceiver,
  type ReceivedSpan,
  startOtlpReceiver,
} from "../helpers/otlp-receiver.js";

const KEY = "tracing-suite-key-0123456789";
const CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN = "00f067aa0ba902b7";

let upstream: ExampleServer;
let keyHash: string;
const upstreamSaw: IncomingHttpHeaders[] = [];

beforeAll(async () => {
  upstream = await startExampleServer({ onRequest: (req) => upstreamSaw.push(req.headers) });
  keyHash = await cheapHash(KEY);
});

afterAll(async () => {
  await upstream.close();
});

function config(telemetry: Record<string, unknown>) {
  return {
    upstream: { url: upstream.url },
    auth: { keys: [{ id: "tracer", hash: keyHash }] },
    telemetry,
  };
}

async function post(url: string, body: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { method: "POST", headers: { ...POST_HEADERS, ...headers }, body });
  await res.text();
  return res;
}

describe("traces over OTLP/HTTP protobuf", () => {
  let receiver: OtlpReceiver;
  let gw: TestGateway;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    gw = await startGateway(
      config({ enabled: true, otlp_endpoint: receiver.url, service_name: "mcpgw-test" }),
    );
  });

  afterAll(async () => {
    await gw.stop();
    await receiver.close();
  });

  it("continues the caller's trace, sends traceparent upstream, and puts the trace id in the audit line", async () => {
    const before = BigInt(Date.now()) * 1_000_000n;
    const init = await post(gw.url, INITIALIZE, {
      authorization: `Bearer ${KEY}`,
      traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01`,
    });
    expect(init.status).toBe(200);
    const sessionId = init.headers.get("mcp-session-id") as string;
    const call = JSON.stringify({
      jsonrpc: "2.0",
      id: 42,
      method: "tools/call",
      params: { name: "echo", arguments: { message: "hi" } },
    });
    expect(
      (await post(gw.url, call, { authorization: `Bearer ${KEY}`, "mcp-session-id": sessionId }))
        .status,
    ).toBe(200);
    await gw.gateway.tracing?.forceFlush();
    const spans = await receiver.waitForSpans((all) => all.length >= 4);
    expect(receiver.contentTypes.every((type) => type === "application/x-protobuf")).toBe(true);

    const server = spans.find(
      (span) => span.kind === 2 && span.traceId === CALLER_TRACE,
    ) as ReceivedSpan;
    expect(server).toMatchObject({ name: "initialize", parentSpanId: CALLER_SPAN });
    expect(server.resource["service.name"]).toBe("mcpgw-test");
    const client = spans.find(
      (span) => span.kind === 3 && span.parentSpanId === server.spanId,
    ) as ReceivedSpan;
    expect(client).toMatchObject({ traceId: CALLER_TRACE, name: "POST" });
    expect(client.attributes["http.response.status_code"]).toBe(200);
    // Wall-clock times: within the test, and the upstream call inside the request.
    const after = BigInt(Date.now() + 1) * 1_000_000n;
    expect(server.startTimeUnixNano).toBeGreaterThanOrEqual(before);
    expect(server.endTimeUnixNano).toBeLessThanOrEqual(after);
    expect(client.startTimeUnixNano).toBeGreaterThanOrEqual(server.startTimeUnixNano);
    expect(client.endTimeUnixNano).toBeLessThanOrEqual(server.endTimeUnixNano);
    expect(client.endTimeUnixNano).toBeGreaterThan(client.startTimeUnixNano);
    // The upstream got the gateway's CLIENT span as its parent, in the caller's trace.
    const forwarded = upstreamSaw.find((headers) => headers.traceparent?.includes(CALLER_TRACE));
    expect(forwarded?.traceparent).toBe(`00-${CALLER_TRACE}-${client.spanId}-01`);

    const toolCall = spans.find(
      (span) => span.kind === 2 && span.name === "tools/call echo",
    ) as ReceivedSpan;
    expect(toolCall.attributes).toEqual({
      "http.request.method": "POST",
      "http.route": "/mcp",
      "http.response.status_code": 200,
      "mcp.method.name": "tools/call",
      "mcp.session.id": sessionId,
      "jsonrpc.request.id": "42",
      "gen_ai.tool.name": "echo",
      "mcp.auth.type": "api_key",
      "mcp.auth.result": "ok",
      "mcp.auth.key_id": "tracer",
      "mcp.auth.scopes": "*",
      "client.address": "127.0.0.1",
      "mcpgw.request.id": expect.stringMatching(/^[\w-]{8}-[0-9a-z]+$/),
    });
    expect(toolCall.statusCode).toBe(0);
    const audit = await gw.auditRecords(2);
    expect(audit.find((record) => record.method === "initialize")?.trace_id).toBe(CALLER_TRACE);
    const toolCallRecord = audit.find((record) => record.tool === "echo");
    expect(toolCallRecord?.trace_id).toBe(toolCall.traceId);
    // One gateway request id in the audit line and on the span.
    expect(toolCallRecord?.gateway_request_id).toBe(toolCall.attributes["mcpgw.request.id"]);
  });

  it("passes the caller's tracestate upstream, and none of a trace it could not continue", async () => {
    const continued = await post(gw.url, INITIALIZE, {
      authorization: `Bearer ${KEY}`,
      traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01`,
      tracestate: "vendor=abc,other=1",
      "x-test-case": "tracestate-continued",
    });
    expect(continued.status).toBe(200);
    // A traceparent that does not parse starts a new trace (W3C Trace Context, processing
    // model): the caller's tracestate belongs to the old one and is not passed on.
    const restarted = await post(gw.url, INITIALIZE, {
      authorization: `Bearer ${KEY}`,
      traceparent: "00-not-a-trace-01",
      tracestate: "vendor=stale",
      "x-test-case": "tracestate-restarted",
    });
    expect(restarted.status).toBe(200);

    const sawContinued = upstreamSaw.find((h) => h["x-test-case"] === "tracestate-continued");
    expect(sawContinued?.tracestate).toBe("vendor=abc,other=1");
    expect(sawContinued?.traceparent).toMatch(new RegExp(`^00-${CALLER_TRACE}-[0-9a-f]{16}-01$`));
    const sawRestarted = upstreamSaw.find((h) => h["x-test-case"] === "tracestate-restarted");
    expect(sawRestarted?.tracestate).toBeUndefined();
    const fresh = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(sawRestarted?.traceparent));
    expect(fresh).not.toBeNull();
    const [, freshTrace, freshSpan] = fresh as unknown as [string, string, string];
    expect(freshTrace).not.toMatch(/^0+$/);
    expect(freshSpan).not.toMatch(/^0+$/);
    // The new trace is the one exported and audited.
    await gw.gateway.tracing?.forceFlush();
    const spans = await receiver.waitForSpans((all) =>
      all.some((span) => span.kind === 3 && span.spanId === freshSpan),
    );
    const client = spans.find((span) => span.spanId === freshSpan) as ReceivedSpan;
    expect(client.traceId).toBe(freshTrace);
    const server = spans.find((span) => span.spanId === client.parentSpanId) as ReceivedSpan;
    expect(server.parentSpanId).toBe("");
    const audit = await gw.auditRecords(1);
    expect(audit.map((record) => record.trace_id)).toContain(freshTrace);
  });

  it("continues the trace a message carries in _meta when no traceparent header came (SEP-414)", async () => {
    const metaTrace = "5bf92f3577b34da6a3ce929d0e0e4736";
    const list = JSON.stringify({
      jsonrpc: "2.0",
      id: 9,
      method: "tools/list",
      params: { _meta: { traceparent: `00-${metaTrace}-${CALLER_SPAN}-01` } },
    });
    expect((await post(gw.url, list, { authorization: `Bearer ${KEY}` })).status).toBe(200);
    await gw.gateway.tracing?.forceFlush();
    const spans = await receiver.waitForSpans((all) =>
      all.some((span) => span.traceId === metaTrace && span.kind === 3),
    );
    const server = spans.find(
      (span) => span.kind === 2 && span.traceId === metaTrace,
    ) as ReceivedSpan;
    expect(server).toMatchObject({ name: "tools/list", parentSpanId: CALLER_SPAN });
    const client = spans.find((span) => span.parentSpanId === server.spanId) as ReceivedSpan;
    const forwarded = upstreamSaw.find((headers) => headers.traceparent?.includes(metaTrace));
    expect(forwarded?.traceparent).toBe(`00-${metaTrace}-${client.spanId}-01`);
    const record = (await gw.auditRecords(1)).find((line) => line.request_id === 9);
    expect(record?.trace_id).toBe(metaTrace);
  });

  it("marks refused and failed requests ERROR", async () => {
    expect((await post(gw.url, INITIALIZE)).status).toBe(401);
    await gw.gateway.tracing?.forceFlush();
    const spans = await receiver.waitForSpans((all) =>
      all.some((span) => span.attributes["mcp.auth.result"] === "missing"),
    );
    const refused = spans.find(
      (span) => span.attributes["mcp.auth.result"] === "missing",
    ) as ReceivedSpan;
    expect(refused).toMatchObject({ kind: 2, statusCode: 2 });
    expect(refused.attributes["http.response.status_code"]).toBe(401);
  });
});

describe("OTLP/HTTP JSON and a collector that is down", () => {
  it("exports JSON when OTEL_EXPORTER_OTLP_PROTOCOL=http/json and the config sets no protocol", async () => {
    const receiver = await startOtlpReceiver();
    process.env.OTEL_EXPORTER_OTLP_PROTOCOL = "http/json";
    process.env.OTEL_RESOURCE_ATTRIBUTES = "deployment.environment.name=staging,team=platform";
    process.env.OTEL_EXPORTER_OTLP_HEADERS = "x-collector-key=from-env";
    let gw: TestGateway;
    try {
      gw = await startGateway(config({ enabled: true, otlp_endpoint: receiver.url }));
    } finally {
      delete process.env.OTEL_EXPORTER_OTLP_PROTOCOL;
      delete process.env.OTEL_RESOURCE_ATTRIBUTES;
      delete process.env.OTEL_EXPORTER_OTLP_HEADERS;
    }
    expect((await post(gw.url, INITIALIZE, { authorization: `Bearer ${KEY}` })).status).toBe(200);
    await gw.gateway.tracing?.forceFlush();
    const spans = await receiver.waitForSpans((all) => all.length >= 2);
    expect(receiver.contentTypes[0]).toBe("application/json");
    // With no telemetry.headers in the config, the variable's headers go to the collector.
    expect(receiver.requestHeaders[0]?.["x-collector-key"]).toBe("from-env");
    const server = spans.find((span) => span.kind === 2) as ReceivedSpan;
    expect(server).toMatchObject({ name: "initialize" });
    // OTEL_RESOURCE_ATTRIBUTES adds to the resource; the service name stays the gateway's.
    expect(server.resource).toMatchObject({
      "service.name": "mcpgw",
      "deployment.environment.name": "staging",
      team: "platform",
    });
    expect(spans.find((span) => span.kind === 3)?.parentSpanId).toBe(server.spanId);
    const now = BigInt(Date.now() + 1) * 1_000_000n;
    expect(server.endTimeUnixNano).toBeLessThanOrEqual(now);
    expect(server.startTimeUnixNano).toBeGreaterThan(now - 60_000_000_000n);
    expect(server.endTimeUnixNano).toBeGreaterThan(server.startTimeUnixNano);
    await gw.stop();
    await receiver.close();
  });

  it("sends telemetry.headers instead of, not beside, OTEL_EXPORTER_OTLP_HEADERS", async () => {
    const receiver = await startOtlpReceiver();
    // Say the variable carries a hosted vendor's key and the config points at a local collector:
    // that key must not travel there.
    process.env.OTEL_EXPORTER_OTLP_HEADERS = "x-collector-key=from-env,x-vendor-key=secret";
    process.env.OTEL_EXPORTER_OTLP_TRACES_HEADERS = "x-traces-key=secret";
    let gw: TestGateway;
    try {
      gw = await startGateway(
        config({
          enabled: true,
          otlp_endpoint: receiver.url,
          headers: { "x-collector-key": "from-config" },
        }),
      );
      // Hidden from the exporter while it was built, the variables are still there after.
      expect(process.env.OTEL_EXPORTER_OTLP_TRACES_HEADERS).toBe("x-traces-key=secret");
    } finally {
      delete process.env.OTEL_EXPORTER_OTLP_HEADERS;
      delete process.env.OTEL_EXPORTER_OTLP_TRACES_HEADERS;
    }
    expect((await post(gw.url, INITIALIZE, { authorization: `Bearer ${KEY}` })).status).toBe(200);
    await gw.gateway.tracing?.forceFlush();
    await receiver.waitForSpans((all) => all.length >= 2);
    const sent = receiver.requestHeaders[0];
    expect(sent?.["x-collector-key"]).toBe("from-config");
    expect(sent?.["x-vendor-key"]).toBeUndefined();
    expect(sent?.["x-traces-key"]).toBeUndefined();
    await gw.stop();
    await receiver.close();
  });

  it("changes no response when the collector is unreachable, and says so once", async () => {
    const collector = (await unusedPortUrl()).replace("/mcp", "");
    // A failed export is retried until this deadline (OTLP exporter default: 10s).
    process.env.OTEL_EXPORTER_OTLP_TIMEOUT = "300";
    let gw: TestGateway;
    try {
      gw = await startGateway(config({ enabled: true, otlp_endpoint: collector }));
    } finally {
      delete process.env.OTEL_EXPORTER_OTLP_TIMEOUT;
    }
    expect(gw.gateway.tracing?.settings.timeoutMs).toBe(300);
    for (let n = 0; n < 3; n++) {
      expect((await post(gw.url, INITIALIZE, { authorization: `Bearer ${KEY}` })).status).toBe(200);
      await gw.gateway.tracing?.forceFlush().catch(() => {});
    }
    const warnings = gw.logs.filter((line) => line.msg.startsWith("tracing: span export failed"));
    expect(warnings).toHaveLength(1);
    // The SDK's own diagnostics, now in the log, do not report the same failures again.
    const tracingWarnings = gw.logs.filter(
      (line) =>
        (line.level === "warn" || line.level === "error") && line.msg.startsWith("tracing:"),
    );
    expect(tracingWarnings).toEqual(warnings);
    await gw.stop();
  });

  it("logs spans dropped because the collector is slower than the traffic", async () => {
    // A collector that takes every export and never answers.
    const held: ServerResponse[] = [];
    const collector = createServer((_req, res) => held.push(res));
    await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
    const { port } = collector.address() as AddressInfo;
    const bsp = {
      OTEL_BSP_MAX_QUEUE_SIZE: "4",
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "2",
      OTEL_BSP_EXPORT_TIMEOUT: "100",
    };
    Object.assign(process.env, bsp);
    let gw: TestGateway;
    try {
      gw = await startGateway(config({ enabled: true, otlp_endpoint: `http://127.0.0.1:${port}` }));
    } finally {
      for (const name of Object.keys(bsp)) delete process.env[name];
    }
    // Two spans go out and hang, four wait in the queue, the rest are dropped.
    for (let n = 0; n < 6; n++) {
      expect((await post(gw.url, INITIALIZE, { authorization: `Bearer ${KEY}` })).status).toBe(200);
    }
    // The processor says how many it dropped once a span fits in the queue again, which takes
    // a hung export to time out; every request meanwhile is answered as usual.
    const dropped = await vi.waitFor(
      async () => {
        expect((await post(gw.url, INITIALIZE, { authorization: `Bearer ${KEY}` })).status).toBe(
          200,
        );
        const line = gw.logs.find((entry) => entry.msg.startsWith("tracing: Dropped"));
        expect(line).toBeDefined();
        return line as (typeof gw.logs)[number];
      },
      { timeout: 10_000, interval: 50 },
    );
    expect(dropped.level).toBe("warn");
    expect(dropped.msg).toMatch(/^tracing: Dropped \d+ spans because maxQueueSize reached/);
    await gw.stop();
    for (const res of held) res.destroy();
    collector.closeAllConnections();
    await new Promise<void>((resolve) => collector.close(() => resolve()));
  });

  it("honours the sampler: an unsampled caller's trace is propagated but not exported", async () => {
    const receiver = await startOtlpReceiver();
    const gw = await startGateway(
      config({ enabled: true, otlp_endpoint: receiver.url, sampler: "parentbased_always_on" }),
    );
    const unsampledTrace = "0af7651916cd43dd8448eb211c80319c";
    const sampledTrace = "1af7651916cd43dd8448eb211c80319c";
    for (const [trace, flags] of [
      [unsampledTrace, "00"],
      [sampledTrace, "01"],
    ]) {
      const res = await post(gw.url, INITIALIZE, {
        authorization: `Bearer ${KEY}`,
        traceparent: `00-${trace}-${CALLER_SPAN}-${flags}`,
      });
      expect(res.status).toBe(200);
    }
    await gw.gateway.tracing?.forceFlush();
    // Everything ended has been exported by now: only the sampled trace's two spans.
    const spans = await receiver.waitForSpans((all) => all.length >= 2);
    expect(spans.map((span) => span.traceId)).toEqual([sampledTrace, sampledTrace]);
    const forwarded = upstreamSaw.find((headers) => headers.traceparent?.includes(unsampledTrace));
    expect(forwarded?.traceparent).toMatch(new RegExp(`^00-${unsampledTrace}-[0-9a-f]{16}-00$`));
    expect(forwarded?.traceparent).not.toContain(CALLER_SPAN);
    const audit = await gw.auditRecords(2);
    expect(audit.map((record) => record.trace_id).sort()).toEqual([unsampledTrace, sampledTrace]);
    await gw.stop();
    await receiver.close();
  });
});

describe("spans of routes", () => {
  it("names the route on each span, the stdio program on its upstream span, and no route for an unknown path", async () => {
    const receiver = await startOtlpReceiver();
    const gw = await startGateway({
      ...config({ enabled: true, otlp_endpoint: receiver.url }),
      routes: [
        {
          path: "/env/mcp",
          upstream: { command: [process.execPath, "test/fixtures/stdio/env-server.mjs"] },
        },
      ],
    });
    const origin = new URL(gw.url).origin;
    const init = await post(`${origin}/env/mcp`, INITIALIZE, { authorization: `Bearer ${KEY}` });
    expect(init.status).toBe(200);
    expect((await post(`${origin}/nowhere`, "{}")).status).toBe(404);
    await gw.gateway.tracing?.forceFlush();
    const spans = await receiver.waitForSpans((all) => all.length >= 3);
    const server = spans.find(
      (span) => span.kind === 2 && span.attributes["http.route"] === "/env/mcp",
    ) as ReceivedSpan;
    expect(server).toMatchObject({ name: "initialize" });
    const client = spans.find((span) => span.parentSpanId === server.spanId) as ReceivedSpan;
    expect(client.attributes["process.executable.name"]).toBe(
      encodeURIComponent(process.execPath.split("/").at(-1) as string),
    );
    expect(client.attributes).not.toHaveProperty("url.full");
    const unmatched = spans.find(
      (span) => span.kind === 2 && span.attributes["http.response.status_code"] === 404,
    ) as ReceivedSpan;
    expect(unmatched.attributes).not.toHaveProperty("http.route");
    expect(unmatched.statusCode).toBe(2);
    await gw.stop();
    await receiver.close();
  });
});
