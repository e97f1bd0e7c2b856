/**
 * Per-user delegation (`upstream.auth` type `authorization_code`) against real parts: an
 * oidc-provider authorization server (PKCE, rotated refresh tokens, ES256 JWT access tokens for
 * the upstream's resource) and an example MCP server that verifies every token. The connect flow
 * is driven headless, as a browser would follow it: the -32042 error's URL, the provider's
 * sign-in, the gateway's callback.
 */
import { readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parse } from "yaml";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { sqliteAvailable } from "../../src/authorization-server/store.js";
import { SecretBox } from "../../src/secrets/cipher.js";
import { freePort } from "../helpers/fake-upstreams.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { POST_HEADERS } from "../helpers/mcp-client.js";
import { startRedis, type TestRedis } from "../helpers/redis.js";
import { startTokenServer, type TokenServer } from "../helpers/token-server.js";

const KEYS = {
  alice: "delegation-alice-key-0123456789",
  bob: "delegation-bob-key-0123456789",
  carol: "delegation-carol-key-0123456789",
};
const CLIENT_ID = "mcpgw-delegation";
const CLIENT_SECRET = "delegation-client-secret-never-logged";
const RESOURCE = "https://crm.example.test/mcp";
const ENCRYPTION_KEY = "delegation-encryption-key-0123456789-abc";
const ROUTE = "/crm/mcp";
/** The gateway's sealing key: the tests open its connect tickets and seal their own. */
const box = new SecretBox(ENCRYPTION_KEY);

let tokens: TokenServer;
let upstream: ExampleServer;
let gw: TestGateway;
let origin: string;
const stateDir = path.join(tmpdir(), `mcpgw-delegation-${process.pid}`);

beforeAll(async () => {
  const port = await freePort();
  origin = `http://127.0.0.1:${port}`;
  tokens = await startTokenServer({
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    resource: RESOURCE,
    // Due for refresh 1 s after it is issued (a tenth of 6 s, at least 5 s ahead).
    ttl: 6,
    authorizationCode: { redirectUri: `${origin}/oauth/callback`, user: "alice@crm" },
  });
  upstream = await startExampleServer({ jsonResponse: true, verifyToken: (t) => tokens.verify(t) });
  gw = await startGateway({
    listen: `127.0.0.1:${port}`,
    secrets: { encryption_key: ENCRYPTION_KEY, state_dir: stateDir },
    auth: {
      keys: [
        { id: "alice", hash: await cheapHash(KEYS.alice) },
        { id: "bob", hash: await cheapHash(KEYS.bob) },
        { id: "carol", hash: await cheapHash(KEYS.carol) },
      ],
    },
    routes: [
      {
        path: "/crm/mcp",
        upstream: {
          url: upstream.url,
          auth: {
            type: "authorization_code",
            authorization_url: tokens.authorizationUrl,
            token_url: tokens.tokenUrl,
            client_id: CLIENT_ID,
            client_secret: CLIENT_SECRET,
            scopes: ["upstream:read"],
            resource: RESOURCE,
          },
        },
      },
    ],
  });
});

afterAll(async () => {
  await gw?.stop();
  await Promise.all([upstream?.close(), tokens?.close()]);
  await rm(stateDir, { recursive: true, force: true });
});

async function call(key: string) {
  const res = await fetch(`${origin}/crm/mcp`, {
    method: "POST",
    headers: { ...POST_HEADERS, authorization: `Bearer ${key}` },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 9,
      method: "tools/call",
      params: { name: "echo", arguments: { message: "hello" } },
    }),
  });
  // biome-ignore lint/suspicious/noExplicitAny: a JSON-RPC answer, read field by field below.
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

/** Follows redirects as a browser does (cookies kept) until the gateway's page answers. */
async function openInBrowser(url: string): Promise<{ status: number; text: string }> {
  const cookies = new Map<string, string>();
  let next = url;
  for (let hops = 0; hops < 10; hops++) {
    const target = new URL(next);
    const cookie = [...cookies].map(([name, value]) => `${name}=${value}`).join("; ");
    const res = await fetch(target, { redirect: "manual", headers: cookie ? { cookie } : {} });
    for (const line of res.headers.getSetCookie()) {
      const [pair = ""] = line.split(";");
      const at = pair.indexOf("=");
      cookies.set(pair.slice(0, at), pair.slice(at + 1));
    }
    const location = res.headers.get("location");
    if (res.status < 300 || res.status >= 400 || location === null) {
      return { status: res.status, text: await res.text() };
    }
    await res.arrayBuffer();
    next = new URL(location, target).href;
  }
  throw new Error("too many redirects");
}

/** The connect link the gateway gives a caller without a token (in its -32042 error). */
async function connectLink(key: string): Promise<URL> {
  const { body } = await call(key);
  expect(body.error?.code).toBe(-32042);
  return new URL(body.error.data.elicitations[0].url);
}

/** The link with a ticket this test sealed itself. */
function linkWith(ticket: { r: string; s: string; e: number }): string {
  return `${origin}/oauth/connect${ROUTE}?ticket=${encodeURIComponent(box.seal(JSON.stringify(ticket)))}`;
}

/**
 * A browser (cookies kept) at the provider: follows its redirects from `url` until it sends
 * the browser back to the gateway's callback, and returns that URL without opening it.
 */
async function throughTheProvider(url: string): Promise<URL> {
  const cookies = new Map<string, string>();
  let next = new URL(url);
  for (let hops = 0; hops < 10; hops++) {
    const cookie = [...cookies].map(([name, value]) => `${name}=${value}`).join("; ");
    const res = await fetch(next, { redirect: "manual", headers: cookie ? { cookie } : {} });
    await res.arrayBuffer();
    for (const line of res.headers.getSetCookie()) {
      const [pair = ""] = line.split(";");
      const at = pair.indexOf("=");
      cookies.set(pair.slice(0, at), pair.slice(at + 1));
    }
    const location = res.headers.get("location");
    if (location === null) throw new Error(`HTTP ${res.status} at ${next}, no redirect`);
    next = new URL(location, next);
    if (next.href.startsWith(`${origin}/oauth/callback?`)) return next;
  }
  throw new Error("too many redirects");
}

/** Opens a gateway page as a browser would: its status, where it sends the browser, its text. */
async function open(url: string | URL) {
  const res = await fetch(url, { redirect: "manual" });
  return { status: res.status, location: res.headers.get("location"), text: await res.text() };
}

describe("authorization_code", () => {
  it("asks a caller without a token to connect (-32042 with a URL bound to the caller)", async () => {
    const { status, body } = await call(KEYS.alice);
    expect(status).toBe(200);
    expect(body.error.code).toBe(-32042);
    const [elicitation] = body.error.data.elicitations;
    expect(elicitation).toMatchObject({ mode: "url", elicitationId: expect.any(String) });
    expect(elicitation.url).toMatch(
      new RegExp(`^${origin}/oauth/connect/crm/mcp\\?ticket=enc%3Av1%3A`),
    );
    expect((await gw.auditRecords(1)).at(-1)).toMatchObject({
      key_id: "alice",
      upstream_auth: "connect_required",
      error: "upstream_authorization_required",
    });
  });

  it("connects the account through the provider with PKCE, then the caller's calls go through", async () => {
    const { body } = await call(KEYS.alice);
    const before = tokens.tokenRequests;
    const page = await openInBrowser(body.error.data.elicitations[0].url);
    expect(page.status).toBe(200);
    expect(page.text).toContain("Account connected");
    expect(tokens.tokenRequests - before).toBe(1);
    const connected = await call(KEYS.alice);
    expect(connected.status).toBe(200);
    expect(connected.body.result.content).toEqual([{ type: "text", text: "hello" }]);
    // Bob has connected nothing: his calls still ask him to.
    expect((await call(KEYS.bob)).body.error.code).toBe(-32042);
  });

  it("refuses an altered connect link, and a provider callback with a state it never issued", async () => {
    const { body } = await call(KEYS.bob);
    const url = new URL(body.error.data.elicitations[0].url);
    url.searchParams.set("ticket", `${url.searchParams.get("ticket")?.slice(0, -4)}AAAA`);
    const altered = await openInBrowser(url.href);
    expect(altered.status).toBe(400);
    expect(altered.text).toContain("This link does not work");
    const callback = await fetch(`${origin}/oauth/callback?code=x&state=never-issued`);
    expect(callback.status).toBe(400);
  });

  it("refreshes the token ahead of expiry, keeping the rotated refresh token", async () => {
    for (const round of [1, 2]) {
      const before = tokens.tokenRequests;
      await vi.waitFor(
        async () => {
          expect((await call(KEYS.alice)).status).toBe(200);
          expect(tokens.tokenRequests).toBeGreaterThan(before);
        },
        { timeout: 8_000, interval: 250 },
      );
      // The refreshed token (from the rotated refresh token, on round 2) is accepted upstream.
      const after = await call(KEYS.alice);
      expect(after.status, `round ${round}`).toBe(200);
      expect(after.body.result.content).toEqual([{ type: "text", text: "hello" }]);
    }
  });

  it("keeps the tokens sealed on disk, never in logs", async () => {
    const logs = gw.rawLogs();
    expect(logs).not.toContain(CLIENT_SECRET);
    expect(logs).not.toContain("eyJhbGciOiJFUzI1NiI");
    const files = await readdir(stateDir).catch(() => [] as string[]);
    if (!sqliteAvailable()) {
      // Node 20 has no node:sqlite: the tokens are kept in memory only.
      expect(files).toEqual([]);
      return;
    }
    expect(files).toContain("upstream-tokens.sqlite");
    const bytes = Buffer.concat(
      await Promise.all(files.map((file) => readFile(path.join(stateDir, file)))),
    ).toString("latin1");
    expect(bytes).toContain("enc:v1:");
    expect(bytes).not.toContain("eyJhbGciOiJFUzI1NiI");
  });
});

describe("connect links", () => {
  it("refuses a ticket past its ten minutes with a page, and sends nobody to the provider", async () => {
    // The gateway's own ticket names the route and the caller, and ends in ten minutes.
    const link = await connectLink(KEYS.carol);
    const before = Date.now();
    const ticket = JSON.parse(box.openText(link.searchParams.get("ticket") as string));
    expect(ticket).toMatchObject({ r: ROUTE, s: "key:carol" });
    expect(ticket.e).toBeGreaterThan(before + 10 * 60_000 - 30_000);
    expect(ticket.e).toBeLessThanOrEqual(before + 10 * 60_000);

    // The same ticket, sealed as the gateway seals it, a second past its end.
    const expired = await open(linkWith({ r: ROUTE, s: "key:carol", e: Date.now() - 1_000 }));
    expect(expired.status).toBe(400);
    expect(expired.location).toBeNull();
    expect(expired.text).toContain("This link does not work");
    expect(expired.text).toContain("It has expired");

    // And a minute before its end: on to the provider, with PKCE and a state.
    const inTime = await open(linkWith({ r: ROUTE, s: "key:carol", e: Date.now() + 60_000 }));
    expect(inTime.status).toBe(302);
    const sent = new URL(inTime.location as string);
    expect(sent.href.startsWith(tokens.authorizationUrl)).toBe(true);
    expect(sent.searchParams.get("code_challenge_method")).toBe("S256");
    expect(sent.searchParams.get("state")).toBeTruthy();
  });

  it("starts a new round trip each time a link is used, and takes each round trip's callback once", async () => {
    const link = await connectLink(KEYS.bob);
    // Used twice before either round trip is done: two round trips, each with its own state.
    const first = await open(link);
    const second = await open(link);
    expect([first.status, second.status]).toEqual([302, 302]);
    const states = [first, second].map((page) =>
      new URL(page.location as string).searchParams.get("state"),
    );
    expect(states[0]).not.toBe(states[1]);

    const callback = await throughTheProvider(first.location as string);
    expect(callback.searchParams.get("state")).toBe(states[0]);
    const connected = await open(callback);
    expect(connected.status).toBe(200);
    expect(connected.text).toContain("Account connected");
    expect((await call(KEYS.bob)).body.result.content).toEqual([{ type: "text", text: "hello" }]);

    // The provider's redirect replayed after the connect: refused, and no code exchanged.
    const requests = tokens.tokenRequests;
    const replayed = await open(callback);
    expect(replayed.status).toBe(400);
    expect(replayed.text).toContain("already used");
    expect(tokens.tokenRequests).toBe(requests);

    // The link used again after the connect: another round trip, for the same caller, whose
    // callback is taken once too.
    const again = await open(link);
    expect(again.status).toBe(302);
    const secondCallback = await throughTheProvider(again.location as string);
    expect((await open(secondCallback)).text).toContain("Account connected");
    expect((await open(secondCallback)).status).toBe(400);
    // Carol, whom the link does not name, still has nothing connected.
    expect((await call(KEYS.carol)).body.error?.code).toBe(-32042);
  });
});

describe("authorization_code on Redis, across replicas", () => {
  let redis: TestRedis;
  let inspect: Redis;
  let shared: TokenServer;
  let sharedUpstream: ExampleServer;
  let one: TestGateway;
  let two: TestGateway;
  let origins: string[];

  beforeAll(async () => {
    redis = await startRedis();
    inspect = new Redis(redis.url);
    const ports = [await freePort(), await freePort()];
    origins = ports.map((port) => `http://127.0.0.1:${port}`);
    // The provider sends users back to the second replica, whoever sent them there.
    const redirectUri = `${origins[1]}/oauth/callback`;
    shared = await startTokenServer({
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      resource: RESOURCE,
      ttl: 6,
      authorizationCode: { redirectUri, user: "alice@crm" },
    });
    sharedUpstream = await startExampleServer({
      jsonResponse: true,
      verifyToken: (t) => shared.verify(t),
    });
    const replica = async (port: number) =>
      startGateway({
        listen: `127.0.0.1:${port}`,
        store: { type: "redis", url: redis.url, key_prefix: "deleg:" },
        secrets: { encryption_key: "delegation-encryption-key-0123456789-abc" },
        auth: { keys: [{ id: "alice", hash: await cheapHash(KEYS.alice) }] },
        routes: [
          {
            path: "/crm/mcp",
            upstream: {
              url: sharedUpstream.url,
              auth: {
                type: "authorization_code",
                authorization_url: shared.authorizationUrl,
                token_url: shared.tokenUrl,
                client_id: CLIENT_ID,
                client_secret: CLIENT_SECRET,
                scopes: ["upstream:read"],
                resource: RESOURCE,
                redirect_uri: redirectUri,
              },
            },
          },
        ],
      });
    const started = await Promise.all(ports.map(replica));
    one = started[0] as TestGateway;
    two = started[1] as TestGateway;
  });

  afterAll(async () => {
    await Promise.all([one?.stop(), two?.stop()]);
    inspect?.disconnect();
    await Promise.all([redis?.stop(), sharedUpstream?.close(), shared?.close()]);
  });

  const callAt = async (at: string) => {
    const res = await fetch(`${at}/crm/mcp`, {
      method: "POST",
      headers: { ...POST_HEADERS, authorization: `Bearer ${KEYS.alice}` },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 3,
        method: "tools/call",
        params: { name: "echo", arguments: { message: "shared" } },
      }),
    });
    // biome-ignore lint/suspicious/noExplicitAny: a JSON-RPC answer, read field by field below.
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };

  it("connects through one replica and the provider's callback at the other, then both use the token", async () => {
    const [first, second] = origins as [string, string];
    const asked = await callAt(first);
    expect(asked.body.error.code).toBe(-32042);
    const link: string = asked.body.error.data.elicitations[0].url;
    expect(link.startsWith(`${first}/oauth/connect/crm/mcp?`)).toBe(true);
    const page = await openInBrowser(link);
    expect(page.text).toContain("Account connected");
    for (const at of [first, second]) {
      const result = await callAt(at);
      expect(result.status, at).toBe(200);
      expect(result.body.result.content).toEqual([{ type: "text", text: "shared" }]);
    }
    const keys = await inspect.keys("deleg:*");
    expect(keys.filter((key) => key.startsWith("deleg:ut:"))).toHaveLength(1);
    // The connect in progress was taken once, at the callback.
    expect(keys.filter((key) => key.startsWith("deleg:uc:"))).toEqual([]);
    const sealed = await inspect.get(keys.find((key) => key.startsWith("deleg:ut:")) as string);
    expect(sealed?.startsWith("enc:v1:")).toBe(true);
  });

  it("refreshes with the rotated refresh token whichever replica is due first", async () => {
    for (const round of [0, 1, 2]) {
      const before = shared.tokenRequests;
      const at = origins[round % 2] as string;
      await vi.waitFor(
        async () => {
          expect((await callAt(at)).status).toBe(200);
          expect(shared.tokenRequests).toBeGreaterThan(before);
        },
        { timeout: 8_000, interval: 250 },
      );
      // The other replica takes the refreshed token from Redis rather than refreshing again
      // with a refresh token the provider has rotated away.
      for (const other of origins) expect((await callAt(other)).status, `round ${round}`).toBe(200);
      expect(shared.tokenRequests).toBe(before + 1);
    }
  });
  it("tells a replica with another encryption key that the stored token does not open", async () => {
    const config = parse(await readFile(one.configFile, "utf8")) as Record<string, unknown>;
    const stranger = await startGateway({
      ...config,
      listen: "127.0.0.1:0",
      secrets: { encryption_key: "another-encryption-key-0123456789-abcdef" },
    });
    try {
      const at = new URL(stranger.url).origin;
      const { status, body } = await callAt(at);
      expect(status).toBe(502);
      expect(body.error.data).toMatchObject({ upstream_auth: "token_unreadable" });
      const record = (await stranger.auditRecords(1)).at(-1);
      expect(record).toMatchObject({ upstream_auth: "token_unreadable", status: 502 });
    } finally {
      await stranger.stop();
    }
  });
});
