/**
 * Rate limits, in memory and on a real Redis server: per caller, per tool and global token
 * buckets through the gateway, 429 with Retry-After and a JSON-RPC error, audited with the
 * limit, counted in the metrics, kept across a reload that does not change them; on Redis,
 * one budget for two gateways, taken atomically, and requests that go on while Redis is away.
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { POST_HEADERS } from "../helpers/mcp-client.js";
import { startRedis, type TestRedis } from "../helpers/redis.js";

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

async function call(key: string, tool = "echo", path = "/mcp", at = origin) {
  const res = await fetch(`${at}${path}`, {
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

/** Limits that a tools/call meets two of: the caller's bucket holds 3, each tool's 1. */
const TWO_LIMITS = [
  { id: "caller", key: "principal", rate: "1/h", burst: 3 },
  { id: "tool", key: "tool", rate: "1/h", burst: 1 },
];

/** A request the second bucket refuses must leave the first as it was. */
async function expectAllOrNothing(at: string): Promise<void> {
  expect((await call(KEYS.a, "echo", "/mcp", at)).status).toBe(200);
  const refused = await call(KEYS.a, "echo", "/mcp", at);
  expect(refused.status).toBe(429);
  expect(JSON.parse(refused.text).error.data.rule).toBe("tool");
  // The refused call took nothing from the caller's bucket: two more calls (other tools).
  expect((await call(KEYS.a, "countdown", "/mcp", at)).status).toBe(200);
  expect((await call(KEYS.a, "add", "/mcp", at)).status).toBe(200);
  const limited = await call(KEYS.a, "inspect-request", "/mcp", at);
  expect(limited.status).toBe(429);
  expect(JSON.parse(limited.text).error.data.rule).toBe("caller");
}

describe("rate limits in memory", () => {
  it("take a token from every bucket a request meets, or from none", async () => {
    const local = await startGateway({ ...config, routes: undefined, rate_limits: TWO_LIMITS });
    try {
      await expectAllOrNothing(new URL(local.url).origin);
    } finally {
      await local.stop();
    }
  });
});

describe("rate limits on Redis", () => {
  let redis: TestRedis;
  let replicas: TestGateway[] = [];
  let inspect: Redis;

  beforeAll(async () => {
    redis = await startRedis();
    inspect = new Redis(redis.url);
    // It sees the server go away in the test that stops it.
    inspect.on("error", () => {});
  });

  afterAll(async () => {
    await Promise.all(replicas.map((replica) => replica.stop()));
    inspect.disconnect();
    await redis.stop();
  });

  /** Two gateways, as two replicas: nothing in common but the Redis server. */
  async function startReplicas(limits: unknown[], prefix: string): Promise<string[]> {
    await Promise.all(replicas.map((replica) => replica.stop()));
    replicas = await Promise.all(
      [0, 1].map(() =>
        startGateway({
          upstream: config.upstream,
          auth: config.auth,
          rate_limits: limits,
          store: { type: "redis", url: redis.url, key_prefix: prefix },
        }),
      ),
    );
    return replicas.map((replica) => new URL(replica.url).origin);
  }

  it("share one budget between replicas, in keys that expire", async () => {
    const [one, two] = await startReplicas(
      [{ id: "per-caller", key: "principal", rate: "1/h", burst: 3 }],
      "shared:",
    );
    expect((await call(KEYS.a, "echo", "/mcp", one)).status).toBe(200);
    expect((await call(KEYS.a, "echo", "/mcp", two)).status).toBe(200);
    expect((await call(KEYS.a, "echo", "/mcp", one)).status).toBe(200);
    const limited = await call(KEYS.a, "echo", "/mcp", two);
    expect(limited.status).toBe(429);
    expect(Number(limited.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(limited.text)).toMatchObject({
      id: 41,
      error: { code: -32000, data: { error: "rate_limited", rule: "per-caller" } },
    });
    // The other caller's bucket is its own.
    expect((await call(KEYS.b, "echo", "/mcp", one)).status).toBe(200);
    const record = (await replicas[1]?.auditRecords(2))?.filter((line) => line.status === 429);
    expect(record?.at(-1)).toMatchObject({ action: "deny", rule: "per-caller", key_id: "a" });
    expect(await (await fetch(`${two}/metrics`)).text()).toContain(
      'mcpgw_rate_limited_total{limit="per-caller"} 1',
    );
    expect((await inspect.keys("shared:*")).sort()).toEqual([
      "shared:rl:per-caller:key:a",
      "shared:rl:per-caller:key:b",
    ]);
    // Gone once the bucket would be full again (3 tokens at 1/h: 3 h, and a second).
    const ttl = await inspect.pttl("shared:rl:per-caller:key:a");
    expect(ttl).toBeGreaterThan(3 * 3_600_000 - 60_000);
    expect(ttl).toBeLessThanOrEqual(3 * 3_600_000 + 1_000);
  });

  it("take atomically: of 30 concurrent requests to two replicas, exactly the burst passes", async () => {
    const origins = await startReplicas(
      [{ id: "global", key: "global", rate: "1/h", burst: 10 }],
      "burst:",
    );
    const statuses = await Promise.all(
      Array.from({ length: 30 }, (_, n) =>
        call(KEYS.a, "echo", "/mcp", origins[n % 2]).then((res) => res.status),
      ),
    );
    expect(statuses.filter((status) => status === 200)).toHaveLength(10);
    expect(statuses.filter((status) => status === 429)).toHaveLength(20);
  });

  it("take a token from every bucket a request meets, or from none", async () => {
    const [one] = await startReplicas(TWO_LIMITS, "both:");
    await expectAllOrNothing(one as string);
  });

  it("let requests through while Redis is away, counted and logged, and limit again once it is back", async () => {
    const [one] = await startReplicas(
      [{ id: "per-caller", key: "principal", rate: "1/h", burst: 2 }],
      "away:",
    );
    const origin = one as string;
    const gw = replicas[0] as TestGateway;
    await redis.stop();
    for (let n = 0; n < 4; n++)
      expect((await call(KEYS.a, "echo", "/mcp", origin)).status).toBe(200);
    const metrics = await (await fetch(`${origin}/metrics`)).text();
    expect(metrics).toMatch(/^mcpgw_store_errors_total\{store="redis"\} [1-9]/m);
    await vi.waitFor(() =>
      expect(gw.logs.some((line) => line.msg.startsWith("store: redis is unreachable"))).toBe(true),
    );
    expect(gw.logs.some((line) => line.msg.startsWith("store: redis commands failed"))).toBe(true);
    expect(gw.rawLogs()).not.toContain(KEYS.a);
    const connected = () =>
      gw.logs.filter((line) => line.msg === "store: connected to redis").length;
    const before = connected();
    await redis.start();
    await vi.waitFor(() => expect(connected()).toBeGreaterThan(before), { timeout: 10_000 });
    expect((await call(KEYS.a, "echo", "/mcp", origin)).status).toBe(200);
    expect((await call(KEYS.a, "echo", "/mcp", origin)).status).toBe(200);
    expect((await call(KEYS.a, "echo", "/mcp", origin)).status).toBe(429);
  });
});
