/**
 * The gateway's own credentials towards upstreams (`upstream.auth`), against real parts: an
 * oidc-provider token endpoint (client credentials, RFC 8707 resource, ES256 JWTs) and example
 * MCP servers, one of which verifies every request's token against that provider's JWKS. The
 * client's own credential (an API key) is never what reaches the upstream.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { SecretBox } from "../../src/secrets/cipher.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { connectClient, POST_HEADERS } from "../helpers/mcp-client.js";
import { startTokenServer, type TokenServer } from "../helpers/token-server.js";

const API_KEY = "upstream-credentials-key-0123456789";
const CLIENT_ID = "mcpgw-gateway";
const CLIENT_SECRET = "upstream-client-secret-never-logged";
const STATIC_TOKEN = "static-upstream-token-never-logged";
const ENCRYPTION_KEY = "test-encryption-key-0123456789-abcdefghij";
const RESOURCE = "https://tools.example.test/mcp";

let tokens: TokenServer;
/** Short-lived tokens (6 s): refreshed 1 s after they are fetched. */
let shortTokens: TokenServer;
let protectedUpstream: ExampleServer;
let shortUpstream: ExampleServer;
let plainUpstream: ExampleServer;
/** Refuses every token while `refusing` is set, as after the upstream's keys rotated. */
let picky: ExampleServer;
let refusing = false;
let gw: TestGateway;
let origin: string;

function clientCredentials(tokenUrl: string, extra: Record<string, unknown> = {}) {
  return {
    type: "client_credentials",
    token_url: tokenUrl,
    client_id: CLIENT_ID,
    // Sealed, as `mcpgw encrypt-secret` prints it: the config holds no plaintext secret.
    client_secret: new SecretBox(ENCRYPTION_KEY).seal(CLIENT_SECRET),
    resource: RESOURCE,
    scopes: ["upstream:read"],
    ...extra,
  };
}

beforeAll(async () => {
  [tokens, shortTokens] = await Promise.all([
    startTokenServer({
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      resource: RESOURCE,
      ttl: 3600,
    }),
    startTokenServer({
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      resource: RESOURCE,
      ttl: 6,
    }),
  ]);
  [protectedUpstream, shortUpstream, plainUpstream] = await Promise.all([
    startExampleServer({ jsonResponse: true, verifyToken: (token) => tokens.verify(token) }),
    startExampleServer({ jsonResponse: true, verifyToken: (token) => shortTokens.verify(token) }),
    startExampleServer({ jsonResponse: true }),
  ]);
  picky = await startExampleServer({
    jsonResponse: true,
    verifyToken: (token) => !refusing && tokens.verify(token),
  });
  const route = (path: string, auth: unknown, url = protectedUpstream.url) => ({
    path,
    upstream: { url, auth },
  });
  gw = await startGateway({
    secrets: { encryption_key: ENCRYPTION_KEY },
    auth: { keys: [{ id: "caller", hash: await cheapHash(API_KEY) }] },
    routes: [
      route("/cc/mcp", clientCredentials(tokens.tokenUrl)),
      route("/burst/mcp", clientCredentials(tokens.tokenUrl, { max_retries: 0 })),
      route("/retry/mcp", clientCredentials(tokens.tokenUrl, { max_retries: 2 })),
      route("/fail/mcp", clientCredentials(tokens.tokenUrl, { max_retries: 1 })),
      route("/slow/mcp", clientCredentials(tokens.tokenUrl, { timeout: "300ms", max_retries: 0 })),
      route(
        "/refused/mcp",
        clientCredentials(tokens.tokenUrl, {
          client_secret: "not-the-secret",
          auth_method: "client_secret_post",
        }),
      ),
      route("/short/mcp", clientCredentials(shortTokens.tokenUrl), shortUpstream.url),
      route("/picky/mcp", clientCredentials(tokens.tokenUrl), picky.url),
      route(
        "/bearer/mcp",
        { type: "bearer", token: STATIC_TOKEN, header: "X-Api-Key" },
        plainUpstream.url,
      ),
    ],
  });
  origin = new URL(gw.url).origin;
});

afterAll(async () => {
  await gw?.stop();
  await Promise.all([
    protectedUpstream?.close(),
    shortUpstream?.close(),
    plainUpstream?.close(),
    picky?.close(),
    tokens?.close(),
    shortTokens?.close(),
  ]);
});

/** One stateless tools/call (the example server answers it without a session). */
async function call(
  path: string,
  tool = "echo",
  args: Record<string, unknown> = { message: "hi" },
) {
  const res = await fetch(`${origin}${path}`, {
    method: "POST",
    headers: { ...POST_HEADERS, authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 7,
      method: "tools/call",
      params: { name: tool, arguments: args },
    }),
  });
  // biome-ignore lint/suspicious/noExplicitAny: a JSON-RPC answer, read field by field below.
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

const auditOf = async (path: string) =>
  (await gw.auditRecords(1)).filter((line) => line.route === path);

describe("client_credentials", () => {
  it("gets one token for a session's many calls, and the upstream accepts it", async () => {
    const before = tokens.tokenRequests;
    const client = await connectClient(`${origin}/cc/mcp`, { authorization: `Bearer ${API_KEY}` });
    const { tools } = await client.client.listTools();
    expect(tools.map((tool) => tool.name)).toContain("echo");
    for (let n = 0; n < 5; n++) {
      const result = await client.client.callTool({
        name: "echo",
        arguments: { message: `m${n}` },
      });
      expect(result.content).toEqual([{ type: "text", text: `m${n}` }]);
    }
    await client.close();
    expect(tokens.tokenRequests - before).toBe(1);
    const lines = await auditOf("/cc/mcp");
    expect(lines.length).toBeGreaterThanOrEqual(7);
    expect(new Set(lines.map((line) => line.upstream_auth))).toEqual(new Set(["ok"]));
    const metrics = await (await fetch(`${origin}/metrics`)).text();
    expect(metrics).toContain('mcpgw_upstream_token_fetches_total{route="/cc/mcp",result="ok"} 1');
  });

  it("fetches once for many callers waiting at the same time (single flight)", async () => {
    const before = tokens.tokenRequests;
    const results = await Promise.all(Array.from({ length: 12 }, () => call("/burst/mcp")));
    expect(results.map((result) => result.status)).toEqual(Array(12).fill(200));
    expect(tokens.tokenRequests - before).toBe(1);
  });

  it("retries a token endpoint answering 503, with backoff", async () => {
    const before = tokens.tokenRequests;
    tokens.failNext(2);
    const result = await call("/retry/mcp");
    expect(result.status).toBe(200);
    expect(result.body.result.content).toEqual([{ type: "text", text: "hi" }]);
    expect(tokens.tokenRequests - before).toBe(3);
  });

  it("answers a JSON-RPC error when the token endpoint keeps failing, and keeps serving other routes", async () => {
    const before = tokens.tokenRequests;
    tokens.failNext(5);
    const failed = await call("/fail/mcp");
    tokens.failNext(0);
    expect(tokens.tokenRequests - before).toBe(2);
    expect(failed.status).toBe(502);
    expect(failed.body).toMatchObject({
      jsonrpc: "2.0",
      id: 7,
      error: {
        code: -32000,
        data: { error: "upstream_auth_failed", upstream_auth: "server_error" },
      },
    });
    const line = (await auditOf("/fail/mcp")).at(-1);
    expect(line).toMatchObject({
      status: 502,
      upstream_auth: "server_error",
      error: "upstream_auth_failed",
    });
    expect((await call("/cc/mcp")).status).toBe(200);
    expect((await call("/bearer/mcp")).status).toBe(200);
  });

  it("gives up on a token endpoint slower than timeout", async () => {
    tokens.delayMs = 2_000;
    try {
      const slow = await call("/slow/mcp");
      expect(slow.status).toBe(502);
      expect(slow.body.error.data.upstream_auth).toBe("timeout");
    } finally {
      tokens.delayMs = 0;
    }
    expect((await auditOf("/slow/mcp")).at(-1)?.upstream_auth).toBe("timeout");
  });

  it("does not retry a refused client, and says so", async () => {
    const before = tokens.tokenRequests;
    const refused = await call("/refused/mcp");
    expect(refused.status).toBe(502);
    expect(refused.body.error.data.upstream_auth).toBe("refused");
    expect(tokens.tokenRequests - before).toBe(1);
  });

  it("refreshes a token ahead of its expiry while calls go on with the old one", async () => {
    expect((await call("/short/mcp")).status).toBe(200);
    const first = shortTokens.tokenRequests;
    // 6 s tokens are due for refresh after 1 s: a call then is answered with the token it has
    // while one refresh runs.
    await vi.waitFor(
      async () => {
        expect((await call("/short/mcp")).status).toBe(200);
        expect(shortTokens.tokenRequests).toBe(first + 1);
      },
      { timeout: 5_000, interval: 250 },
    );
    expect((await call("/short/mcp")).status).toBe(200);
    expect(shortTokens.tokenRequests).toBe(first + 1);
  });

  it("answers 502 when the upstream refuses the token (401), and gets a new one for the next request", async () => {
    expect((await call("/picky/mcp")).status).toBe(200);
    const before = tokens.tokenRequests;
    expect((await call("/picky/mcp")).status).toBe(200);
    expect(tokens.tokenRequests).toBe(before);
    refusing = true;
    // The upstream's 401 is about the gateway's token: the client gets a 502, no challenge.
    const refused = await call("/picky/mcp");
    expect(refused.status).toBe(502);
    expect(refused.body.error.data).toEqual({
      error: "upstream_auth_failed",
      upstream_auth: "rejected",
    });
    expect((await auditOf("/picky/mcp")).at(-1)).toMatchObject({
      status: 502,
      upstream_auth: "rejected",
    });
    refusing = false;
    expect((await call("/picky/mcp")).status).toBe(200);
    expect(tokens.tokenRequests).toBe(before + 1);
  });

  it("never logs or audits the client secret, the tokens or the caller's key", async () => {
    const logs = gw.rawLogs();
    const audit = JSON.stringify(await gw.auditRecords(1));
    for (const text of [logs, audit]) {
      expect(text).not.toContain(CLIENT_SECRET);
      expect(text).not.toContain(STATIC_TOKEN);
      expect(text).not.toContain(API_KEY);
      // An ES256 JWT's header, base64url: {"alg":"ES256",...
      expect(text).not.toContain("eyJhbGciOiJFUzI1NiI");
    }
  });
});

describe("bearer", () => {
  it("sends the static token in its header instead of the caller's credentials", async () => {
    const result = await call("/bearer/mcp", "inspect-request", {});
    expect(result.status).toBe(200);
    const seen = JSON.parse(result.body.result.content[0].text) as Record<string, string>;
    expect(seen["x-api-key"]).toBe(STATIC_TOKEN);
    expect(seen.authorization).toBeUndefined();
    expect((await auditOf("/bearer/mcp")).at(-1)?.upstream_auth).toBe("ok");
  });
});
