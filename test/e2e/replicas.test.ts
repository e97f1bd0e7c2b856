/**
 * Replicas as they are deployed: two `mcpgw run` processes, each with two workers, on one real
 * Redis behind a round-robin balancer. What must be shared is: the rate limits' budget, and
 * the embedded authorization server (a user signs in through both; a revocation at one is
 * refused by every worker of the other).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { type Balancer, startBalancer } from "../helpers/balancer.js";
import { type Daemon, killDaemons, startDaemon } from "../helpers/daemon.js";
import { freePort } from "../helpers/fake-upstreams.js";
import { cheapHash } from "../helpers/keys.js";
import { logInAndConsent } from "../helpers/login-driver.js";
import { INITIALIZE, POST_HEADERS } from "../helpers/mcp-client.js";
import { authorizationRequest, exchangeCode, registerPublicClient } from "../helpers/oauth-flow.js";
import { startRedis, type TestRedis } from "../helpers/redis.js";

const KEY = "replicas-e2e-key-0123456789";
const PASSWORD = "correct horse battery staple";
const REDIRECT = "http://127.0.0.1:53682/callback";

let redis: TestRedis;
let upstream: ExampleServer;
let balancer: Balancer | undefined;

beforeAll(async () => {
  redis = await startRedis();
  upstream = await startExampleServer();
});

afterEach(async () => {
  killDaemons();
  await balancer?.close();
  balancer = undefined;
});

afterAll(async () => {
  await Promise.all([upstream?.close(), redis?.stop()]);
});

/** A fresh connection per request, so that each may reach another worker. */
async function post(url: string, authorization: string): Promise<number> {
  const res = await fetch(url, {
    method: "POST",
    headers: { ...POST_HEADERS, authorization, connection: "close" },
    body: INITIALIZE,
  });
  await res.arrayBuffer();
  return res.status;
}

async function replicas(config: (index: number) => Record<string, unknown>): Promise<Daemon[]> {
  return Promise.all([0, 1].map((index) => startDaemon(upstream.url, config(index))));
}

describe("two gateway processes of two workers each, on one Redis", () => {
  it("share one rate-limit budget across processes and workers", async () => {
    const hash = await cheapHash(KEY);
    const [one, two] = (await replicas(() => ({
      workers: 2,
      auth: { keys: [{ id: "shared", hash }] },
      rate_limits: [{ id: "per-caller", key: "principal", rate: "1/h", burst: 6 }],
      store: { type: "redis", url: redis.url, key_prefix: "e2e-rl:" },
    }))) as [Daemon, Daemon];
    const statuses = await Promise.all(
      Array.from({ length: 16 }, (_, n) => post((n % 2 ? one : two).url, `Bearer ${KEY}`)),
    );
    expect(statuses.filter((status) => status === 200)).toHaveLength(6);
    expect(statuses.filter((status) => status === 429)).toHaveLength(10);
  });

  it("sign a user in through both, and refuse everywhere a grant revoked at one", async () => {
    const port = await freePort();
    const issuer = `http://127.0.0.1:${port}`;
    const hash = await cheapHash(PASSWORD);
    const daemons = await replicas(() => ({
      workers: 2,
      auth: { oauth: { required_scopes: ["mcp:read"] } },
      store: { type: "redis", url: redis.url, key_prefix: "e2e-as:" },
      secrets: { encryption_key: "replicas-e2e-encryption-key-0123456789" },
      authorization_server: {
        enabled: true,
        issuer,
        users: [{ username: "alice", password_hash: hash, scopes: ["mcp:read"] }],
      },
    }));
    balancer = await startBalancer(port, () => daemons.map((daemon) => daemon.url));
    const clientId = await registerPublicClient(issuer, "e2e", REDIRECT);
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
    const tokens = (await (
      await exchangeCode(issuer, {
        clientId,
        code: redirect.searchParams.get("code") as string,
        verifier: request.verifier,
        redirectUri: REDIRECT,
      })
    ).json()) as { access_token: string; refresh_token: string };
    const [one, two] = daemons as [Daemon, Daemon];
    const bearer = `Bearer ${tokens.access_token}`;
    for (const daemon of daemons) {
      expect(await Promise.all([0, 1, 2, 3].map(() => post(daemon.url, bearer)))).toEqual([
        200, 200, 200, 200,
      ]);
    }
    const revoked = await fetch(new URL("/oauth/revoke", one.url), {
      method: "POST",
      body: new URLSearchParams({ token: tokens.refresh_token, client_id: clientId }),
    });
    expect(revoked.status).toBe(200);
    // Every worker of the other process, whichever a connection reaches.
    await vi.waitFor(
      async () =>
        expect(await Promise.all([0, 1, 2, 3].map(() => post(two.url, bearer)))).toEqual([
          401, 401, 401, 401,
        ]),
      { timeout: 3_000, interval: 20 },
    );
  });
});
