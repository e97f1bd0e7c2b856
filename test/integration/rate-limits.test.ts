/**
 * Rate limits in memory: per caller, per tool and global token buckets through the gateway,
 * 429 with Retry-After and a JSON-RPC error, audited with the limit, counted in the metrics,
 * and kept across a reload that does not change them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { POST_HEADERS } from "../helpers/mcp-client.js";

const KEYS = { a: "limits-a-key-0123456789", b: "limits-b-key-0123456789" };

let upstream: ExampleServer;
let gw: TestGateway;
let origin: string;
let config: Record<string, unknown>;

beforeAll(async () => {
  upstream = await startExampleServer({ jsonResponse: true });
  config = {
    upstream: { url: upstream.url },
    routes: [{ path: "/tools/mcp", upstream: { url: upstream.url } }],
    auth: {
      keys: [
        { id: "a", hash: await cheapHash(KEYS.a) },
        { id: "b", hash: await cheapHash(KEYS.b) },
      ],
    },
    // Slow refills: a test never waits for a token to come back.
    rate_limits: [
      { id: "per-caller", key: "principal", rate: "1/h", burst: 3, route: "/mcp" },
      { id: "per-tool", key: "tool", rate: "1/h", burst: 2, route: "/tools/*" },
    ],
  };
  gw = await startGateway(config);
  origin = new URL(gw.url).origin;
});

afterAll(async () => {
  await gw.stop();
  await upstream.close();
});

async function call(key: string, tool = "echo", path = "/mcp") {
  const res = await fetch(`${origin}${path}`, {
    method: "POST",
    headers: { ...POST_HEADERS, authorization: `Bearer ${key}` },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 41,
      method: "tools/call",
      params: { name: tool, arguments: tool === "echo" ? { message: "x" } : { steps: 1 } },
    }),
  });
  return { status: res.status, retryAfter: res.headers.get("retry-after"), text: await res.text() };
}

describe("rate limits", () => {
  it("give each caller its own bucket, and answer 429 with Retry-After and a JSON-RPC error", async () => {
    for (let n = 0; n < 3; n++) expect((await call(KEYS.a)).status).toBe(200);
    const limited = await call(KEYS.a);
    expect(limited.status).toBe(429);
    expect(Number(limited.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(limited.text)).toMatchObject({
      id: 41,
      error: { code: -32000, data: { error: "rate_limited", rule: "per-caller" } },
    });
    // b has a bucket of its own.
    expect((await call(KEYS.b)).status).toBe(200);
    const record = (await gw.auditRecords(1)).filter((line) => line.status === 429).at(-1);
    expect(record).toMatchObject({ action: "deny", rule: "per-caller", key_id: "a" });
    const metrics = await (await fetch(`${origin}/metrics`)).text();
    expect(metrics).toContain('mcpgw_rate_limited_total{limit="per-caller"} 1');
  });

  it("give each tool a bucket for everyone on the routes they name, kept across a reload", async () => {
    expect((await call(KEYS.a, "echo", "/tools/mcp")).status).toBe(200);
    expect((await call(KEYS.b, "echo", "/tools/mcp")).status).toBe(200);
    await gw.writeConfig({ ...config, log: { level: "info" } });
    await gw.gateway.reload("SIGHUP");
    const limited = await call(KEYS.b, "echo", "/tools/mcp");
    expect(limited.status).toBe(429);
    expect(JSON.parse(limited.text).error.data.rule).toBe("per-tool");
    // Another tool, another bucket; and the per-caller limit is not on this route.
    expect((await call(KEYS.a, "countdown", "/tools/mcp")).status).toBe(200);
  });
});
