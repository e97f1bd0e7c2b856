/**
 * The connect links of per-user delegation (`upstream.auth` type `authorization_code`), for
 * what docs/security.md (G36) listed as not tested: a ticket past its ten minutes is refused,
 * and what a link used twice does. The ticket is sealed with `secrets.encryption_key`, which
 * this test knows, so it can open the gateway's tickets and seal its own with any expiry.
 * Against real parts, as test/integration/upstream-delegation.test.ts: an oidc-provider
 * authorization server and an example MCP server that verifies every token.
 */
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { SecretBox } from "../../src/secrets/cipher.js";
import { freePort } from "../helpers/fake-upstreams.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { POST_HEADERS } from "../helpers/mcp-client.js";
import { startTokenServer, type TokenServer } from "../helpers/token-server.js";

const KEYS = { alice: "tickets-alice-key-0123456789", bob: "tickets-bob-key-0123456789" };
const CLIENT_ID = "mcpgw-tickets";
const CLIENT_SECRET = "tickets-client-secret-0123456789";
const RESOURCE = "https://crm.example.test/mcp";
const ENCRYPTION_KEY = "tickets-encryption-key-0123456789-abcdef";
const ROUTE = "/crm/mcp";

let tokens: TokenServer;
let upstream: ExampleServer;
let gw: TestGateway;
let origin: string;
const stateDir = path.join(tmpdir(), `mcpgw-tickets-${process.pid}`);
const box = new SecretBox(ENCRYPTION_KEY);

beforeAll(async () => {
  const port = await freePort();
  origin = `http://127.0.0.1:${port}`;
  tokens = await startTokenServer({
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    resource: RESOURCE,
    ttl: 600,
    authorizationCode: { redirectUri: `${origin}/oauth/callback`, user: "bob@crm" },
  });
  upstream = await startExampleServer({ jsonResponse: true, verifyToken: (t) => tokens.verify(t) });
  gw = await startGateway({
    listen: `127.0.0.1:${port}`,
    secrets: { encryption_key: ENCRYPTION_KEY, state_dir: stateDir },
    auth: {
      keys: [
        { id: "alice", hash: await cheapHash(KEYS.alice) },
        { id: "bob", hash: await cheapHash(KEYS.bob) },
      ],
    },
    routes: [
      {
        path: ROUTE,
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
  const res = await fetch(`${origin}${ROUTE}`, {
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

describe("connect tickets", () => {
  it("refuses a ticket past its ten minutes with a page, and sends nobody to the provider", async () => {
    // The gateway's own ticket names the route and the caller, and ends in ten minutes.
    const link = await connectLink(KEYS.alice);
    const before = Date.now();
    const ticket = JSON.parse(box.openText(link.searchParams.get("ticket") as string));
    expect(ticket).toMatchObject({ r: ROUTE, s: "key:alice" });
    expect(ticket.e).toBeGreaterThan(before + 10 * 60_000 - 30_000);
    expect(ticket.e).toBeLessThanOrEqual(before + 10 * 60_000);

    // The same ticket, sealed as the gateway seals it, a second past its end.
    const expired = await open(linkWith({ r: ROUTE, s: "key:alice", e: Date.now() - 1_000 }));
    expect(expired.status).toBe(400);
    expect(expired.location).toBeNull();
    expect(expired.text).toContain("This link does not work");
    expect(expired.text).toContain("It has expired");

    // And a minute before its end: on to the provider, with PKCE and a state.
    const inTime = await open(linkWith({ r: ROUTE, s: "key:alice", e: Date.now() + 60_000 }));
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
    // Alice, whom the link does not name, still has nothing connected.
    expect((await call(KEYS.alice)).body.error?.code).toBe(-32042);
  });
});
