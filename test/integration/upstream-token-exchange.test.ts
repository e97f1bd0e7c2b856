/**
 * RFC 8693 token exchange towards an upstream (`upstream.auth` type `token_exchange`): the
 * caller's verified access token is exchanged, on its behalf, at an oidc-provider token
 * endpoint for a token for the upstream, whose `sub` is the caller's; the upstream (an example
 * MCP server) verifies it. The caller's own token never reaches the upstream.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import {
  type JwksServer,
  makeKey,
  type SigningKey,
  signToken,
  startJwksServer,
} from "../helpers/jwks-server.js";
import { cheapHash } from "../helpers/keys.js";
import { POST_HEADERS } from "../helpers/mcp-client.js";
import { startTokenServer, type TokenServer } from "../helpers/token-server.js";

const AUDIENCE = "https://gw.example.test/mcp";
const RESOURCE = "https://hr.example.test/mcp";
const API_KEY = "token-exchange-api-key-0123456789";

let key: SigningKey;
let jwks: JwksServer;
let tokens: TokenServer;
let upstream: ExampleServer;
let gw: TestGateway;
let origin: string;
/** What the upstream saw: the subject of each token it accepted, and any other Authorization. */
const seen: { sub: unknown; raw: string }[] = [];

beforeAll(async () => {
  key = await makeKey("ES256", "idp-1");
  jwks = await startJwksServer([key]);
  tokens = await startTokenServer({
    clientId: "mcpgw-obo",
    clientSecret: "obo-client-secret-never-logged",
    resource: RESOURCE,
    ttl: 600,
    tokenExchange: {
      issuer: jwks.issuer,
      jwksUrl: jwks.url,
      audience: AUDIENCE,
      refuse: ["mallory"],
    },
  });
  upstream = await startExampleServer({
    jsonResponse: true,
    verifyToken: async (token) => {
      const claims = await tokens.claims(token);
      seen.push({ sub: claims?.sub, raw: token });
      return claims !== undefined;
    },
  });
  gw = await startGateway({
    auth: {
      oauth: { enabled: true, issuer: jwks.issuer, audience: AUDIENCE, jwks_url: jwks.url },
      keys: [{ id: "robot", hash: await cheapHash(API_KEY) }],
    },
    upstream: {
      url: upstream.url,
      auth: {
        type: "token_exchange",
        token_url: tokens.tokenUrl,
        client_id: "mcpgw-obo",
        client_secret: "obo-client-secret-never-logged",
        resource: RESOURCE,
        scopes: ["upstream:read"],
      },
    },
  });
  origin = new URL(gw.url).origin;
});

afterAll(async () => {
  await gw?.stop();
  await Promise.all([upstream?.close(), tokens?.close(), jwks?.close()]);
});

async function call(bearer: string) {
  const res = await fetch(`${origin}/mcp`, {
    method: "POST",
    headers: { ...POST_HEADERS, authorization: `Bearer ${bearer}` },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 5,
      method: "tools/call",
      params: { name: "echo", arguments: { message: "on behalf" } },
    }),
  });
  // biome-ignore lint/suspicious/noExplicitAny: a JSON-RPC answer, read field by field below.
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

describe("token_exchange", () => {
  it("exchanges the caller's token for one that acts for the same subject, once per token", async () => {
    const alice = await signToken(key, jwks.issuer, AUDIENCE, { claims: { sub: "alice" } });
    const bob = await signToken(key, jwks.issuer, AUDIENCE, { claims: { sub: "bob" } });
    for (const token of [alice, alice, bob, alice]) {
      const result = await call(token);
      expect(result.status).toBe(200);
      expect(result.body.result.content).toEqual([{ type: "text", text: "on behalf" }]);
    }
    expect(tokens.exchangedFor).toEqual(["alice", "bob"]);
    expect(seen.map((entry) => entry.sub)).toEqual(["alice", "alice", "bob", "alice"]);
    // The callers' own tokens never reached the upstream.
    expect(seen.map((entry) => entry.raw)).not.toContain(alice);
    expect(seen.map((entry) => entry.raw)).not.toContain(bob);
    const audit = await gw.auditRecords(4);
    expect(new Set(audit.map((line) => line.upstream_auth))).toEqual(new Set(["ok"]));
  });

  it("has nothing to exchange for an API key caller: 502 with the reason", async () => {
    const result = await call(API_KEY);
    expect(result.status).toBe(502);
    expect(result.body.error.data).toEqual({
      error: "upstream_auth_failed",
      upstream_auth: "no_subject_token",
    });
  });

  it("answers 502 when the authorization server refuses the exchange, without retrying", async () => {
    const before = tokens.tokenRequests;
    const mallory = await signToken(key, jwks.issuer, AUDIENCE, { claims: { sub: "mallory" } });
    const result = await call(mallory);
    expect(result.status).toBe(502);
    expect(result.body.error.data.upstream_auth).toBe("refused");
    expect(tokens.tokenRequests - before).toBe(1);
    expect(seen.map((entry) => entry.sub)).not.toContain("mallory");
  });
});
