import * as diagnostics from "node:diagnostics_channel";
import { once } from "node:events";
import { type ClientRequest, request as httpRequest } from "node:http";
import type { Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
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
import { INITIALIZE, POST_HEADERS, TOOLS_LIST } from "../helpers/mcp-client.js";

const AUDIENCE = "mcpgw-integration";
const API_KEY = "oauth-suite-api-key-0123456789";
const INSPECTOR = "http://localhost:6274";

let upstream: ExampleServer;
let jwks: JwksServer;
let key: SigningKey;
let keyHash: string;

beforeAll(async () => {
  key = await makeKey("ES256", "gw-1");
  [upstream, jwks, keyHash] = await Promise.all([
    startExampleServer(),
    startJwksServer([key]),
    cheapHash(API_KEY),
  ]);
});

afterAll(async () => {
  await upstream.close();
  await jwks.close();
});

function oauthConfig(extra: Record<string, unknown> = {}) {
  return {
    enabled: true,
    issuer: jwks.issuer,
    audience: AUDIENCE,
    jwks_url: jwks.url,
    required_scopes: ["mcp:read"],
    ...extra,
  };
}

const post = (url: string, headers: Record<string, string> = {}) =>
  fetch(url, { method: "POST", headers: { ...POST_HEADERS, ...headers }, body: INITIALIZE });

describe("OAuth resource server beside API keys", () => {
  let gw: TestGateway;
  let origin: string;

  beforeAll(async () => {
    gw = await startGateway({
      upstream: { url: upstream.url },
      auth: { keys: [{ id: "ci", hash: keyHash }], oauth: oauthConfig() },
      cors: { allowed_origins: [INSPECTOR] },
    });
    origin = new URL(gw.url).origin;
  });

  afterAll(async () => {
    await gw.stop();
  });

  it("serves RFC 9728 metadata at metadata_path and at the path-suffixed well-known URL", async () => {
    for (const path of [
      "/.well-known/oauth-protected-resource",
      "/.well-known/oauth-protected-resource/mcp",
    ]) {
      const res = await fetch(`${origin}${path}`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({
        resource: gw.url,
        authorization_servers: [jwks.issuer],
        bearer_methods_supported: ["header"],
        scopes_supported: ["mcp:read"],
      });
    }
  });

  it("challenges a request without credentials with an absolute resource_metadata", async () => {
    const res = await post(gw.url);
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe(
      `Bearer realm="mcpgw", resource_metadata="${origin}/.well-known/oauth-protected-resource"`,
    );
  });

  it("accepts a JWT and audits the client, subject and scopes", async () => {
    const token = await signToken(key, jwks.issuer, AUDIENCE, {
      claims: { sub: "alice", client_id: "inspector" },
    });
    const res = await post(gw.url, { authorization: `Bearer ${token}` });
    expect(res.status).toBe(200);
    await res.text();
    const record = (await gw.auditRecords(1)).at(-1);
    expect(record).toMatchObject({
      method: "initialize",
      action: "allow",
      auth_type: "oauth",
      auth_result: "ok",
      oauth_client_id: "inspector",
      sub: "alice",
      scopes: "mcp:read mcp:write",
    });
    expect(JSON.stringify(await gw.auditRecords(1))).not.toContain(token);
  });

  it("keeps API keys working beside OAuth (dispatch by token shape)", async () => {
    const res = await post(gw.url, { authorization: `Bearer ${API_KEY}` });
    expect(res.status).toBe(200);
    await res.text();
    expect((await gw.auditRecords(1)).at(-1)).toMatchObject({ auth_type: "api_key", key_id: "ci" });
  });

  it("answers a token without the required scope 403 insufficient_scope, naming the scope", async () => {
    const token = await signToken(key, jwks.issuer, AUDIENCE, { claims: { scope: "other" } });
    const res = await post(gw.url, { authorization: `Bearer ${token}` });
    expect(res.status).toBe(403);
    expect(res.headers.get("www-authenticate")).toBe(
      `Bearer realm="mcpgw", resource_metadata="${origin}/.well-known/oauth-protected-resource", error="insufficient_scope", error_description="the token lacks the scope mcp:read", scope="mcp:read"`,
    );
    expect((await gw.auditRecords(1)).at(-1)).toMatchObject({
      action: "deny",
      auth_result: "insufficient_scope",
      status: 403,
    });
  });

  it("answers an expired or foreign token 401 invalid_token with its audit result", async () => {
    const cases: [Promise<string>, string][] = [
      [signToken(key, jwks.issuer, AUDIENCE, { expiresIn: -120 }), "expired"],
      [signToken(key, jwks.issuer, "another-api"), "bad_audience"],
      [signToken(key, "https://other-idp.example/", AUDIENCE), "bad_issuer"],
      [signToken(await makeKey("ES256", "stranger"), jwks.issuer, AUDIENCE), "unknown_kid"],
    ];
    for (const [token, result] of cases) {
      const res = await post(gw.url, { authorization: `Bearer ${await token}` });
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toContain('error="invalid_token"');
      expect((await gw.auditRecords(1)).at(-1)).toMatchObject({
        auth_type: "oauth",
        auth_result: result,
      });
    }
  });

  it("refuses oversized tokens before any verification: 16 KB at the HTTP layer, 12 KB as malformed", async () => {
    const jwtShaped = (bytes: number) =>
      `${"a".repeat(bytes / 2)}.${"b".repeat(bytes / 2 - 500)}.${"c".repeat(400)}`;
    const huge = await post(gw.url, { authorization: `Bearer ${jwtShaped(16 * 1024)}` });
    expect(huge.status).toBe(431);
    const large = await post(gw.url, { authorization: `Bearer ${jwtShaped(12 * 1024)}` });
    expect(large.status).toBe(401);
    expect(large.headers.get("www-authenticate")).toContain('error="invalid_token"');
    expect((await gw.auditRecords(1)).at(-1)).toMatchObject({ auth_result: "malformed" });
  });

  it("answers CORS preflights for allowed origins and refuses others (DNS rebinding)", async () => {
    const preflight = await fetch(gw.url, {
      method: "OPTIONS",
      headers: {
        origin: INSPECTOR,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, mcp-session-id",
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe(INSPECTOR);
    expect(preflight.headers.get("access-control-allow-methods")).toBe("GET, POST, DELETE");
    expect(preflight.headers.get("access-control-allow-headers")).toBe(
      "Authorization, Content-Type, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID",
    );
    const refused = await fetch(gw.url, {
      method: "OPTIONS",
      headers: { origin: "http://evil.example" },
    });
    expect(refused.status).toBe(403);

    const challenged = await post(gw.url, { origin: INSPECTOR });
    expect(challenged.status).toBe(401);
    expect(challenged.headers.get("access-control-allow-origin")).toBe(INSPECTOR);
    expect(challenged.headers.get("access-control-expose-headers")).toContain("WWW-Authenticate");

    const rebinding = await post(gw.url, {
      origin: "http://evil.example",
      authorization: `Bearer ${API_KEY}`,
    });
    expect(rebinding.status).toBe(403);
    expect((await gw.auditRecords(1)).at(-1)).toMatchObject({
      action: "deny",
      error: "origin_not_allowed",
      status: 403,
    });

    const metadata = await fetch(`${origin}/.well-known/oauth-protected-resource/mcp`, {
      headers: { origin: INSPECTOR },
    });
    expect(metadata.headers.get("access-control-allow-origin")).toBe(INSPECTOR);
    await metadata.text();
    // The metadata endpoint admits Origins as the MCP endpoint does.
    const foreign = await fetch(`${origin}/.well-known/oauth-protected-resource/mcp`, {
      headers: { origin: "http://attacker.example" },
    });
    expect(foreign.status).toBe(403);
    expect(await foreign.json()).toMatchObject({ error: "origin_not_allowed" });
  });
});

describe("OAuth only, public_url, trust_proxy, disabled", () => {
  it("refuses an opaque token with invalid_token when no API key is configured", async () => {
    const gw = await startGateway({
      upstream: { url: upstream.url },
      auth: { oauth: oauthConfig() },
    });
    const res = await post(gw.url, { authorization: "Bearer opaque-looking-token" });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toContain('error="invalid_token"');
    expect((await gw.auditRecords(1)).at(-1)).toMatchObject({
      auth_type: "oauth",
      auth_result: "malformed",
    });
    await gw.stop();
  });

  it("takes the MCP path, resource and metadata URL from public_url", async () => {
    const publicUrl = "https://gw.example.com/team/mcp";
    const gw = await startGateway({
      upstream: { url: upstream.url },
      auth: { oauth: oauthConfig({ public_url: publicUrl }) },
    });
    const origin = new URL(gw.url).origin;
    expect(gw.url).toBe(`${origin}/team/mcp`);
    const metadata = (await (
      await fetch(`${origin}/.well-known/oauth-protected-resource/team/mcp`)
    ).json()) as { resource: string };
    expect(metadata.resource).toBe(publicUrl);
    const res = await post(gw.url);
    expect(res.headers.get("www-authenticate")).toBe(
      'Bearer realm="mcpgw", resource_metadata="https://gw.example.com/.well-known/oauth-protected-resource"',
    );
    expect((await fetch(`${origin}/mcp`, { method: "POST" })).status).toBe(404);
    await gw.stop();
  });

  it("believes X-Forwarded-For/Proto/Host only from a trusted proxy", async () => {
    const forwarded = { "x-forwarded-proto": "https", "x-forwarded-host": "gw.example.net" };
    const trusting = await startGateway({
      upstream: { url: upstream.url },
      auth: { oauth: oauthConfig() },
      trust_proxy: ["127.0.0.0/8"],
    });
    const origin = new URL(trusting.url).origin;
    const trusted = (await (
      await fetch(`${origin}/.well-known/oauth-protected-resource`, { headers: forwarded })
    ).json()) as { resource: string };
    expect(trusted.resource).toBe("https://gw.example.net/mcp");
    // The client address is the nearest X-Forwarded-For hop that is not a trusted proxy.
    await post(trusting.url, { "x-forwarded-for": "198.51.100.9, 203.0.113.7, 127.0.0.2" });
    expect((await trusting.auditRecords(1)).at(-1)?.remote_addr).toBe("203.0.113.7");
    await trusting.stop();

    const wary = await startGateway({
      upstream: { url: upstream.url },
      auth: { oauth: oauthConfig() },
    });
    const waryOrigin = new URL(wary.url).origin;
    const ignored = (await (
      await fetch(`${waryOrigin}/.well-known/oauth-protected-resource`, { headers: forwarded })
    ).json()) as { resource: string };
    expect(ignored.resource).toBe(wary.url);
    await post(wary.url, { "x-forwarded-for": "203.0.113.7" });
    expect((await wary.auditRecords(1)).at(-1)?.remote_addr).toBe("127.0.0.1");
    await wary.stop();
  });

  it("answers 404 for the metadata and no resource_metadata while OAuth is disabled", async () => {
    const gw = await startGateway({
      upstream: { url: upstream.url },
      auth: { keys: [{ id: "ci", hash: keyHash }] },
    });
    const origin = new URL(gw.url).origin;
    expect((await fetch(`${origin}/.well-known/oauth-protected-resource`)).status).toBe(404);
    expect((await fetch(`${origin}/.well-known/oauth-protected-resource/mcp`)).status).toBe(404);
    expect((await post(gw.url)).headers.get("www-authenticate")).toBe('Bearer realm="mcpgw"');
    await gw.stop();
  });
});

describe("JWKS outage", () => {
  it("answers 503 with Retry-After, not invalid_token, when a new kid cannot be looked up", async () => {
    const own = await startJwksServer([key]);
    const gw = await startGateway({
      upstream: { url: upstream.url },
      auth: { oauth: oauthConfig({ jwks_url: own.url, jwks_cache_ttl: "200ms" }) },
    });
    const known = await signToken(key, jwks.issuer, AUDIENCE);
    own.mode = "error";
    const rotated = await signToken(await makeKey("ES256", "rotated"), jwks.issuer, AUDIENCE);
    // The event this depends on: a fetch of the JWKS has failed since the outage began (the
    // background refresh runs every 200ms). From then on a new kid cannot be looked up, whether
    // or not the refetch cooldown has passed.
    await vi.waitFor(
      () => {
        if (!gw.logs.some((line) => line.msg === "jwks refresh failed: keeping the last good keys"))
          throw new Error("no failed JWKS refresh yet");
      },
      { timeout: 5_000, interval: 10 },
    );
    const res = await post(gw.url, { authorization: `Bearer ${rotated}` });
    await res.text();
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("5");
    expect(res.headers.get("www-authenticate")).toBeNull();
    expect((await gw.auditRecords(1)).at(-1)).toMatchObject({
      auth_result: "jwks_unavailable",
      status: 503,
    });
    // Tokens signed with the keys fetched before the outage keep working.
    const ok = await post(gw.url, { authorization: `Bearer ${known}` });
    expect(ok.status).toBe(200);
    await ok.text();
    await gw.stop();
    await own.close();
  });
});

describe("while a token is still being verified", () => {
  /**
   * A gateway whose JWKS server holds the refetch that a new kid causes, so that a request
   * bearing `rotated` stays in verification until `release()`.
   */
  async function verificationHeld(kid: string) {
    const own = await startJwksServer([key]);
    const upstreamSaw: string[] = [];
    const counting = await startExampleServer({
      onRequest: (req) => upstreamSaw.push(req.method ?? ""),
    });
    // The refresh interval is also the least time between two refetches for an unknown kid.
    const gw = await startGateway({
      upstream: { url: counting.url },
      auth: { oauth: oauthConfig({ jwks_url: own.url, jwks_cache_ttl: "50ms" }) },
    });
    const rotatedKey = await makeKey("ES256", kid);
    const rotated = await signToken(rotatedKey, jwks.issuer, AUDIENCE);
    own.mode = "hold";
    // The background refresh is held first; while it is, no other background refresh starts,
    // so every request held after it is the gateway's refetch for the unknown kid.
    await own.nextHold();
    return {
      gw,
      upstreamSaw,
      rotated,
      /**
       * Sends until a request is held in verification; within the refetch cooldown the
       * unknown kid is refused at once (`refused` checks that), and the next one is sent.
       */
      async sendUntilHeld<T>(send: () => Promise<T>, refused: (outcome: T) => Promise<void>) {
        for (let attempts = 1; ; attempts++) {
          const held = own.nextHold().then(() => "held" as const);
          const pending = send();
          const first = await Promise.race([held, pending]);
          if (first === "held") return { attempts, pending };
          await refused(first);
        }
      },
      release() {
        own.keys = [key, rotatedKey];
        own.release();
      },
      async close() {
        await gw.stop();
        await counting.close();
        await own.close();
      },
    };
  }

  it("answers a standalone GET 503 shutting_down when shutdown begins, and forwards nothing", async () => {
    const held = await verificationHeld("rotated-shutdown");
    const { pending } = await held.sendUntilHeld(
      () =>
        fetch(held.gw.url, {
          headers: { accept: "text/event-stream", authorization: `Bearer ${held.rotated}` },
        }),
      async (res) => {
        expect(res.status).toBe(401);
        await res.text();
      },
    );
    const stopped = held.gw.gateway.shutdown("test");
    held.release();
    const res = await pending;
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: "shutting_down" });
    await stopped;
    expect(held.upstreamSaw).not.toContain("GET");
    expect((await held.gw.auditRecords(1)).at(-1)).toMatchObject({
      method: "GET",
      auth_result: "ok",
      status: 503,
      error: "shutting_down",
    });
    await held.close();
  });

  it("audits a client that left client_aborted, and forwards nothing", async () => {
    const held = await verificationHeld("rotated-leaving");
    // The gateway's side of each client connection, to know when it has seen the client leave.
    const gatewaySockets: Socket[] = [];
    const onSocket = (message: unknown) => {
      const { socket } = message as { socket: Socket };
      if (socket.localPort === held.gw.gateway.address.port) gatewaySockets.push(socket);
    };
    diagnostics.subscribe("net.server.socket", onSocket);
    const clients: ClientRequest[] = [];
    const post = () =>
      new Promise<number>((resolve, reject) => {
        const client = httpRequest(
          held.gw.url,
          {
            method: "POST",
            agent: false,
            headers: { ...POST_HEADERS, authorization: `Bearer ${held.rotated}` },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        clients.push(client);
        client.on("error", reject);
        client.end(TOOLS_LIST);
      });
    const { attempts } = await held.sendUntilHeld(post, async (status) => {
      expect(status).toBe(401);
    });
    const gatewaySide = gatewaySockets.at(-1);
    if (!gatewaySide) throw new Error("the gateway accepted no connection");
    const gone = once(gatewaySide, "close");
    clients
      .at(-1)
      ?.on("error", () => {})
      .destroy();
    await gone;
    diagnostics.unsubscribe("net.server.socket", onSocket);
    held.release();
    expect((await held.gw.auditRecords(attempts)).at(-1)).toMatchObject({
      method: "tools/list",
      auth_result: "ok",
      status: 499,
      error: "client_aborted",
    });
    expect(held.upstreamSaw).toEqual([]);
    await held.close();
  });
});

describe("reload", () => {
  it("swaps the verifier: new audience, new required scopes, OAuth off, and flushes verified tokens", async () => {
    const config = (oauth: Record<string, unknown>) => ({
      upstream: { url: upstream.url },
      auth: { keys: [{ id: "ci", hash: keyHash }], oauth: oauthConfig(oauth) },
    });
    const gw = await startGateway(config({}));
    const token = await signToken(key, jwks.issuer, AUDIENCE);
    const status = async () => {
      const res = await post(gw.url, { authorization: `Bearer ${token}` });
      await res.text();
      return res.status;
    };
    expect(await status()).toBe(200);

    await gw.writeConfig(config({ audience: "another-audience" }));
    await gw.gateway.reload("SIGHUP");
    expect(await status()).toBe(401);

    await gw.writeConfig(config({ required_scopes: ["mcp:admin"] }));
    await gw.gateway.reload("SIGHUP");
    expect(await status()).toBe(403);
    const fetchesBefore = jwks.fetches;

    await gw.writeConfig(config({ enabled: false }));
    await gw.gateway.reload("SIGHUP");
    const origin = new URL(gw.url).origin;
    expect((await fetch(`${origin}/.well-known/oauth-protected-resource`)).status).toBe(404);
    // The JWT now goes to the key store, which does not know it.
    expect(await status()).toBe(401);
    expect((await gw.auditRecords(1)).at(-1)).toMatchObject({
      auth_type: "api_key",
      auth_result: "unknown_key",
    });
    // An unchanged jwks_url is not fetched again by a reload: the cached keys carry over.
    expect(jwks.fetches).toBe(fetchesBefore);
    await gw.stop();
  });

  it("keeps the old verifier when a new jwks_url cannot be primed", async () => {
    const gw = await startGateway({
      upstream: { url: upstream.url },
      auth: { oauth: oauthConfig() },
    });
    const token = await signToken(key, jwks.issuer, AUDIENCE);
    await gw.writeConfig({
      upstream: { url: upstream.url },
      auth: { oauth: oauthConfig({ jwks_url: "http://127.0.0.1:1/jwks.json" }) },
    });
    await gw.gateway.reload("SIGHUP");
    const failed = gw.logs.find((line) =>
      line.msg.startsWith("config reload failed: oauth: prime jwks:"),
    );
    expect(failed).toBeDefined();
    expect(gw.gateway.generation.id).toBe(1);
    const res = await post(gw.url, { authorization: `Bearer ${token}` });
    expect(res.status).toBe(200);
    await res.text();
    await gw.stop();
  });
});
