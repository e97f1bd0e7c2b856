/**
 * The embedded authorization server on a real Redis, for what docs/security.md listed as not
 * tested: a replica whose subscription to revocations was cut reads the revoked set again when
 * it reconnects (G33), and a sign-in at the OpenID Connect provider that took longer than ten
 * minutes is refused at its callback (G34).
 *
 * Replica B reaches Redis through a TCP relay that can refuse new connections: Redis cuts B's
 * subscription (CLIENT KILL TYPE pubsub), the relay keeps it from coming back while replica A
 * revokes a token, so that B certainly misses the message, then lets it reconnect.
 */
import { createHash } from "node:crypto";
import { createConnection, createServer, type Socket } from "node:net";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { freePort } from "../helpers/fake-upstreams.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { logInAndConsent } from "../helpers/login-driver.js";
import { INITIALIZE, POST_HEADERS } from "../helpers/mcp-client.js";
import { authorizationRequest, exchangeCode, registerPublicClient } from "../helpers/oauth-flow.js";
import { startIdentityProvider } from "../helpers/oidc-identity-provider.js";
import { startRedis, type TestRedis } from "../helpers/redis.js";

const PASSWORD = "correct horse battery staple";
const REDIRECT = "http://127.0.0.1:53682/callback";
const ENCRYPTION_KEY = "redis-gaps-encryption-key-0123456789-abcdef";

let redis: TestRedis;
let inspect: Redis;
let upstream: ExampleServer;

beforeAll(async () => {
  redis = await startRedis();
  inspect = new Redis(redis.url);
  upstream = await startExampleServer();
});

afterAll(async () => {
  inspect?.disconnect();
  await Promise.all([upstream?.close(), redis?.stop()]);
});

/** A TCP relay to Redis that can be told to turn new connections away, or to answer late. */
interface Relay {
  url: string;
  /** While true, a new connection is closed as soon as it is accepted. */
  refuseNew: boolean;
  /** How long Redis's answers are held before they go on, in order (0: not at all). */
  delayMs: number;
  close(): Promise<void>;
}

async function startRelay(port: number): Promise<Relay> {
  const open = new Set<Socket>();
  const relay: Relay = {
    url: "",
    refuseNew: false,
    delayMs: 0,
    close: async () => {},
  };
  const server = createServer((client) => {
    if (relay.refuseNew) {
      client.destroy();
      return;
    }
    const toRedis = createConnection({ host: "127.0.0.1", port });
    for (const socket of [client, toRedis]) {
      open.add(socket);
      // Either side closing closes the other, as a cut connection would.
      socket.on("error", () => {});
      socket.on("close", () => {
        open.delete(socket);
        client.destroy();
        toRedis.destroy();
      });
    }
    client.pipe(toRedis);
    let lastDue = 0;
    toRedis.on("data", (chunk: Buffer) => {
      if (relay.delayMs === 0 && lastDue < Date.now()) {
        client.write(chunk);
        return;
      }
      lastDue = Math.max(Date.now() + relay.delayMs, lastDue);
      setTimeout(() => client.write(chunk), lastDue - Date.now());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  relay.url = `redis://127.0.0.1:${address.port}`;
  relay.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of open) socket.destroy();
      server.close(() => resolve());
    });
  return relay;
}

interface Tokens {
  access_token: string;
  refresh_token: string;
}

async function statusAt(gateway: TestGateway, token: string): Promise<number> {
  const res = await fetch(`${new URL(gateway.url).origin}/mcp`, {
    method: "POST",
    headers: { ...POST_HEADERS, authorization: `Bearer ${token}` },
    body: INITIALIZE,
  });
  await res.arrayBuffer();
  return res.status;
}

describe("a replica whose subscription to revocations was cut", () => {
  const prefix = "as-resubscribe:";
  let relay: Relay;
  let one: TestGateway;
  let two: TestGateway;
  let issuer: string;

  const replica = async (port: number, redisUrl: string) =>
    startGateway({
      listen: `127.0.0.1:${port}`,
      upstream: { url: upstream.url },
      store: { type: "redis", url: redisUrl, key_prefix: prefix },
      secrets: { encryption_key: ENCRYPTION_KEY },
      authorization_server: {
        enabled: true,
        issuer,
        users: [
          { username: "alice", password_hash: await cheapHash(PASSWORD), scopes: ["mcp:read"] },
        ],
      },
    });

  beforeAll(async () => {
    relay = await startRelay(redis.port);
    const port = await freePort();
    issuer = `http://127.0.0.1:${port}`;
    // A signs users in and revokes; B (through the relay) only verifies tokens.
    one = await replica(port, redis.url);
    two = await replica(await freePort(), relay.url);
  });

  afterAll(async () => {
    await Promise.all([one?.stop(), two?.stop()]);
    await relay?.close();
  });

  /** Registration, login, consent and code exchange at A. */
  async function signIn(): Promise<{ clientId: string; tokens: Tokens }> {
    const clientId = await registerPublicClient(issuer, "resubscribe", REDIRECT);
    const request = authorizationRequest({
      issuer,
      clientId,
      redirectUri: REDIRECT,
      scope: "mcp:read",
      resource: `${issuer}/mcp`,
    });
    const { redirect } = await logInAndConsent(new URL(request.url), REDIRECT, {
      username: "alice",
      password: PASSWORD,
    });
    const exchanged = await exchangeCode(issuer, {
      clientId,
      code: redirect.searchParams.get("code") as string,
      verifier: request.verifier,
      redirectUri: REDIRECT,
    });
    expect(exchanged.status).toBe(200);
    return { clientId, tokens: (await exchanged.json()) as Tokens };
  }

  it("reads the revoked set again when it reconnects, and refuses a token revoked while it was cut", async () => {
    const { clientId, tokens } = await signIn();
    expect(await statusAt(one, tokens.access_token)).toBe(200);
    expect(await statusAt(two, tokens.access_token)).toBe(200);

    // Redis cuts every subscription; B's cannot come back through the relay.
    relay.refuseNew = true;
    const cut = await inspect.call("CLIENT", "KILL", "TYPE", "pubsub");
    expect(Number(cut)).toBeGreaterThanOrEqual(2);
    const revoked = await fetch(`${issuer}/oauth/revoke`, {
      method: "POST",
      body: new URLSearchParams({ token: tokens.access_token, client_id: clientId }),
    });
    expect(revoked.status).toBe(200);
    expect(await statusAt(one, tokens.access_token)).toBe(401);
    // The revocation is in Redis's set, but B missed its message: B still accepts the token.
    expect(await inspect.zcard(`${prefix}as:revoked`)).toBeGreaterThanOrEqual(1);
    expect(await statusAt(two, tokens.access_token)).toBe(200);

    // B's subscription comes back, and with it the revoked set read again.
    relay.refuseNew = false;
    await vi.waitFor(async () => expect(await statusAt(two, tokens.access_token)).toBe(401), {
      timeout: 10_000,
      interval: 20,
    });
    expect((await two.auditRecords(1)).at(-1)).toMatchObject({
      auth_result: "revoked",
      status: 401,
      sub: "alice",
    });
  });

  it("refuses at once, at the replica that revoked it, a grant revoked while Redis answers slowly", async () => {
    const { clientId, tokens } = await signIn();
    expect(await statusAt(two, tokens.access_token)).toBe(200);
    // Each of B's Redis commands now takes 60 ms (its timeout is 250 ms): the revoked grant's
    // tokens are looked up and recorded after oidc-provider has revoked the grant itself.
    relay.delayMs = 60;
    try {
      const revoked = await fetch(`${new URL(two.url).origin}/oauth/revoke`, {
        method: "POST",
        body: new URLSearchParams({ token: tokens.refresh_token, client_id: clientId }),
      });
      expect(revoked.status).toBe(200);
      // The answer leaves once B holds the grant's tokens as revoked (docs/security.md G33).
      expect(await statusAt(two, tokens.access_token)).toBe(401);
    } finally {
      relay.delayMs = 0;
    }
  });
});

describe("a sign-in at the OpenID Connect provider, on the Redis store", () => {
  const prefix = "as-oidc-pending:";
  let idp: Awaited<ReturnType<typeof startIdentityProvider>>;
  let gw: TestGateway;
  let here: string;
  const callbackUrl = () => `${here}/oauth/login/callback`;

  beforeAll(async () => {
    const port = await freePort();
    here = `http://127.0.0.1:${port}`;
    idp = await startIdentityProvider({
      clientId: "mcpgw",
      clientSecret: "idp-secret-0123456789",
      redirectUri: callbackUrl(),
      user: "bob",
    });
    gw = await startGateway({
      listen: `127.0.0.1:${port}`,
      upstream: { url: upstream.url },
      store: { type: "redis", url: redis.url, key_prefix: prefix },
      secrets: { encryption_key: ENCRYPTION_KEY },
      authorization_server: {
        enabled: true,
        issuer: here,
        login: {
          type: "oidc",
          issuer: idp.issuer,
          client_id: "mcpgw",
          client_secret: "idp-secret-0123456789",
          scopes: ["mcp:read"],
          username_claim: "email",
        },
      },
    });
  });

  afterAll(async () => {
    await gw?.stop();
    await idp?.close();
  });

  /** Through the provider's sign-in, up to (not into) its redirect back to the gateway. */
  async function atTheProvidersRedirect(clientId: string): Promise<URL> {
    const request = authorizationRequest({
      issuer: here,
      clientId,
      redirectUri: REDIRECT,
      scope: "mcp:read",
      resource: `${here}/mcp`,
    });
    const { redirect, pages } = await logInAndConsent(new URL(request.url), callbackUrl(), {
      username: "unused",
      password: "unused",
    });
    expect(pages).toEqual([]);
    return redirect;
  }

  /** The key the sign-in in progress waits under (redis-store.ts: `once:<digest of key>`). */
  const pendingKey = (state: string) =>
    `${prefix}as:once:${createHash("sha256").update(`login:${state}`).digest("base64url")}`;

  it("is refused at the callback once its ten minutes have passed", async () => {
    const clientId = await registerPublicClient(here, "late-sign-in", REDIRECT);

    // In time: the callback sends the browser on to the authorization request's interaction.
    const inTime = await atTheProvidersRedirect(clientId);
    const accepted = await fetch(inTime, { redirect: "manual" });
    await accepted.arrayBuffer();
    expect(accepted.status).toBe(303);
    expect(accepted.headers.get("location")).toMatch(/^\/oauth\/interaction\/[^?]+\?ticket=/);

    // The sign-in waits ten minutes, no more.
    const late = await atTheProvidersRedirect(clientId);
    const key = pendingKey(late.searchParams.get("state") as string);
    const ttl = await inspect.pttl(key);
    expect(ttl).toBeGreaterThan(10 * 60_000 - 30_000);
    expect(ttl).toBeLessThanOrEqual(10 * 60_000);
    // Ten minutes pass, as Redis sees them.
    await inspect.pexpire(key, 1);
    await vi.waitFor(async () => expect(await inspect.exists(key)).toBe(0), { interval: 5 });
    const refused = await fetch(late, { redirect: "manual" });
    expect(refused.status).toBe(400);
    expect(refused.headers.get("location")).toBeNull();
    expect(await refused.text()).toContain("This sign-in has expired or was not started here.");
  });
});
