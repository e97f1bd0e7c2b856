/**
 * The embedded authorization server on the shared Redis store, as replicas run it: two
 * gateways on one real Redis behind a load balancer that sends each request to the other
 * replica in turn, so that registration, the login and consent pages, the code, the token and
 * every refresh are each served by another gateway than the step before.
 */
import { PassThrough } from "node:stream";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { RedisAuthorizationStore } from "../../src/authorization-server/redis-store.js";
import { rotateKey } from "../../src/cli/rotate-key.js";
import { createLogger } from "../../src/log.js";
import { SecretBox } from "../../src/secrets/cipher.js";
import { RedisStore } from "../../src/store/redis.js";
import { type Balancer, startBalancer } from "../helpers/balancer.js";
import { freePort } from "../helpers/fake-upstreams.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { logInAndConsent } from "../helpers/login-driver.js";
import { INITIALIZE, POST_HEADERS } from "../helpers/mcp-client.js";
import { authorizationRequest, exchangeCode, registerPublicClient } from "../helpers/oauth-flow.js";
import { startRedis, type TestRedis } from "../helpers/redis.js";

const PASSWORD = "correct horse battery staple";
const REDIRECT = "http://127.0.0.1:53682/callback";
const ENCRYPTION_KEY = "replicas-encryption-key-0123456789-abcdef";
const PREFIX = "as-replicas:";

let redis: TestRedis;
let inspect: Redis;
let upstream: ExampleServer;
let balancer: Balancer;
let replicas: TestGateway[] = [];

async function replica(origin: string): Promise<TestGateway> {
  return startGateway({
    upstream: { url: upstream.url },
    auth: { oauth: { required_scopes: ["mcp:read"] } },
    store: { type: "redis", url: redis.url, key_prefix: PREFIX },
    secrets: { encryption_key: ENCRYPTION_KEY },
    authorization_server: {
      enabled: true,
      issuer: origin,
      users: [
        { username: "alice", password_hash: await cheapHash(PASSWORD), scopes: ["mcp:read"] },
      ],
    },
  });
}

beforeAll(async () => {
  redis = await startRedis();
  inspect = new Redis(redis.url);
  upstream = await startExampleServer();
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  replicas = [await replica(origin), await replica(origin)];
  balancer = await startBalancer(port, () => replicas.map((gateway) => gateway.url));
});

afterAll(async () => {
  await Promise.all(replicas.map((gateway) => gateway.stop()));
  inspect?.disconnect();
  await Promise.all([balancer?.close(), upstream?.close(), redis?.stop()]);
});

async function statusAt(replicaUrl: string, token: string | undefined): Promise<number> {
  const res = await fetch(`${new URL(replicaUrl).origin}/mcp`, {
    method: "POST",
    headers: { ...POST_HEADERS, ...(token && { authorization: `Bearer ${token}` }) },
    body: INITIALIZE,
  });
  await res.arrayBuffer();
  return res.status;
}

interface Tokens {
  access_token: string;
  refresh_token: string;
}

/** Registration, login, consent and code exchange, every step through the balancer. */
async function signIn(): Promise<{ clientId: string; tokens: Tokens }> {
  const issuer = balancer.origin;
  const clientId = await registerPublicClient(issuer, "replicas", REDIRECT);
  const request = authorizationRequest({
    issuer,
    clientId,
    redirectUri: REDIRECT,
    scope: "mcp:read offline_access",
    resource: `${issuer}/mcp`,
  });
  const { redirect, pages } = await logInAndConsent(new URL(request.url), REDIRECT, {
    username: "alice",
    password: PASSWORD,
  });
  expect(pages).toEqual(["login", "consent"]);
  expect(redirect.searchParams.get("state")).toBe(request.state);
  const res = await exchangeCode(issuer, {
    clientId,
    code: redirect.searchParams.get("code") as string,
    verifier: request.verifier,
    redirectUri: REDIRECT,
  });
  expect(res.status).toBe(200);
  return { clientId, tokens: (await res.json()) as Tokens };
}

const refreshAt = (replicaUrl: string, clientId: string, token: string) =>
  fetch(`${new URL(replicaUrl).origin}/oauth/token`, {
    method: "POST",
    body: new URLSearchParams({
      grant_type: "refresh_token",
      refresh_token: token,
      client_id: clientId,
    }),
  });

describe("the authorization server on Redis, across replicas", () => {
  it("signs a user in with each step at the other replica, and both accept the token", async () => {
    const before = [...balancer.served];
    const { tokens } = await signIn();
    // Every step alternated: both replicas served a part of the flow.
    expect((balancer.served[0] ?? 0) - (before[0] ?? 0)).toBeGreaterThanOrEqual(2);
    expect((balancer.served[1] ?? 0) - (before[1] ?? 0)).toBeGreaterThanOrEqual(2);
    const [one, two] = replicas as [TestGateway, TestGateway];
    expect(await statusAt(one.url, tokens.access_token)).toBe(200);
    expect(await statusAt(two.url, tokens.access_token)).toBe(200);
    // One set of signing keys, made by the first replica, read by the second.
    const jwks = await Promise.all(
      replicas.map(async (gateway) =>
        (await fetch(`${new URL(gateway.url).origin}/oauth/jwks`)).json(),
      ),
    );
    expect(jwks[0]).toEqual(jwks[1]);
  });

  it("rotates a refresh token at each replica in turn, and a spent one revokes the grant everywhere", async () => {
    const [one, two] = replicas as [TestGateway, TestGateway];
    const { clientId, tokens } = await signIn();
    const rotated = await refreshAt(one.url, clientId, tokens.refresh_token);
    expect(rotated.status).toBe(200);
    const second = (await rotated.json()) as Tokens;
    const again = await refreshAt(two.url, clientId, second.refresh_token);
    expect(again.status).toBe(200);
    const third = (await again.json()) as Tokens;
    // The first refresh token, spent at one, presented at two: refused, and taken for a
    // stolen one (oidc-provider's reuse detection), its grant revoked at both replicas.
    expect((await refreshAt(two.url, clientId, tokens.refresh_token)).status).toBe(400);
    expect((await refreshAt(one.url, clientId, third.refresh_token)).status).toBe(400);
    await vi.waitFor(async () => expect(await statusAt(one.url, third.access_token)).toBe(401), {
      timeout: 2_000,
      interval: 5,
    });
  });

  it("refuses everywhere a grant revoked at one replica", async () => {
    const [one, two] = replicas as [TestGateway, TestGateway];
    const { clientId, tokens } = await signIn();
    expect(await statusAt(two.url, tokens.access_token)).toBe(200);
    const revoked = await fetch(`${new URL(one.url).origin}/oauth/revoke`, {
      method: "POST",
      body: new URLSearchParams({ token: tokens.refresh_token, client_id: clientId }),
    });
    expect(revoked.status).toBe(200);
    // At the replica that revoked: at once. At the other: as soon as Redis's message lands.
    expect(await statusAt(one.url, tokens.access_token)).toBe(401);
    await vi.waitFor(async () => expect(await statusAt(two.url, tokens.access_token)).toBe(401), {
      timeout: 2_000,
      interval: 5,
    });
    const record = (await two.auditRecords(1)).at(-1);
    expect(record).toMatchObject({ auth_result: "revoked", status: 401, sub: "alice" });
  });

  it("keeps no token readable in Redis: ids as digests, payloads sealed", async () => {
    const { tokens } = await signIn();
    const keys = await inspect.keys(`${PREFIX}as:*`);
    expect(keys.length).toBeGreaterThan(0);
    const values: string[] = [];
    for (const key of keys) {
      const type = await inspect.type(key);
      if (type === "string") values.push((await inspect.get(key)) ?? "");
      if (type === "hash") values.push(...Object.values(await inspect.hgetall(key)));
      if (type === "set") values.push(...(await inspect.smembers(key)));
    }
    const everything = [...keys, ...values].join("\n");
    expect(everything).not.toContain(tokens.refresh_token);
    expect(everything).not.toContain(tokens.access_token.split(".")[2]);
    expect(everything).not.toContain("alice");
    expect(everything).not.toContain('"kty"');
  });

  it("gives a replica started later the same keys and clients: the token issued before verifies", async () => {
    const { clientId, tokens } = await signIn();
    const [one] = replicas as [TestGateway, TestGateway];
    await one.stop();
    replicas[0] = await replica(balancer.origin);
    const fresh = replicas[0] as TestGateway;
    expect(await statusAt(fresh.url, tokens.access_token)).toBe(200);
    const rotated = await refreshAt(fresh.url, clientId, tokens.refresh_token);
    expect(rotated.status).toBe(200);
    await rotated.arrayBuffer();
  });

  it("rotate-signing-key puts a new key first on Redis, the old one kept; replicas sign with it after a restart", async () => {
    const { tokens } = await signIn();
    const out = new PassThrough();
    const err = new PassThrough();
    const [one] = replicas as [TestGateway, TestGateway];
    expect(await rotateKey(one.configFile, out, err)).toBe(0);
    const printed = String(out.read());
    expect(printed).toMatch(/new signing key mcpgw-\S+ on redis 127\.0\.0\.1:/);
    await one.stop();
    replicas[0] = await replica(balancer.origin);
    const restarted = replicas[0] as TestGateway;
    const { keys } = (await (
      await fetch(`${new URL(restarted.url).origin}/oauth/jwks`)
    ).json()) as { keys: { kid: string }[] };
    expect(keys).toHaveLength(2);
    expect(printed).toContain(keys[0]?.kid);
    // A token signed with the previous key stays valid until it expires.
    expect(await statusAt(restarted.url, tokens.access_token)).toBe(200);
  });

  it("hands a sign-in in progress from one replica's store to another's, once", async () => {
    const box = new SecretBox(ENCRYPTION_KEY);
    const log = createLogger("silent");
    const connections = [0, 1].map(
      () => new RedisStore({ url: redis.url, keyPrefix: PREFIX, timeout: 1_000 }, log),
    );
    await Promise.all(connections.map((connection) => connection.connect()));
    const [a, b] = connections.map(
      (connection) => new RedisAuthorizationStore(connection, box, log),
    ) as [RedisAuthorizationStore, RedisAuthorizationStore];
    await a.putOnce("login:state-1", '{"uid":"u1"}', 60_000);
    expect(await b.takeOnce("login:state-1")).toBe('{"uid":"u1"}');
    expect(await a.takeOnce("login:state-1")).toBeUndefined();
    await Promise.all(connections.map((connection) => connection.close()));
  });
});
