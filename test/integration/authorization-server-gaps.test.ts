/**
 * The embedded authorization server, for what docs/security.md listed as not tested: a token
 * held to the one route it was issued for (G12), the modes of `state_dir` and its key file
 * (G28), the access token of a replayed code refused at the MCP endpoint (G31), and the login
 * and consent pages' headers, logs and demo password (G35). One gateway with two routes, each
 * in front of its own example MCP server that counts what reaches it.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { DEMO_PASSWORD } from "../../src/auth/demo-key.js";
import { rotateKey } from "../../src/cli/rotate-key.js";
import { ConfigError } from "../../src/errors.js";
import { createLogger } from "../../src/log.js";
import { Gateway } from "../../src/runtime/gateway.js";
import { freePort } from "../helpers/fake-upstreams.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { logInAndConsent } from "../helpers/login-driver.js";
import { INITIALIZE, POST_HEADERS } from "../helpers/mcp-client.js";
import { exchangeCode, registerPublicClient } from "../helpers/oauth-flow.js";
import { LOOPBACK_OUTBOUND } from "../helpers/outbound.js";

const PASSWORD = "correct horse battery staple";
const CI_SECRET = "gaps-ci-bot-secret-0123456789";
const REDIRECT = "http://127.0.0.1:53682/callback";
const ROUTE_A = "/a/mcp";
const ROUTE_B = "/b/mcp";
/** The pages' headers, as docs/security.md (G35) and docs/authorization-server.md state them. */
const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "content-security-policy":
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
  "x-frame-options": "DENY",
};

/** An example MCP server that counts the requests it received. */
async function countingServer(): Promise<ExampleServer & { requests: () => number }> {
  let requests = 0;
  const server = await startExampleServer({ onRequest: () => requests++ });
  return { ...server, requests: () => requests };
}

let upstreamA: Awaited<ReturnType<typeof countingServer>>;
let upstreamB: Awaited<ReturnType<typeof countingServer>>;
let gw: TestGateway;
let origin: string;
let scratch: string;
/** Does not exist before the gateway starts: the gateway makes it. */
let stateDir: string;

beforeAll(async () => {
  [upstreamA, upstreamB] = await Promise.all([countingServer(), countingServer()]);
  scratch = await mkdtemp(path.join(tmpdir(), "mcpgw-as-gaps-"));
  stateDir = path.join(scratch, "state");
  const port = await freePort();
  origin = `http://127.0.0.1:${port}`;
  gw = await startGateway({
    listen: `127.0.0.1:${port}`,
    routes: [
      { path: ROUTE_A, upstream: { url: upstreamA.url } },
      { path: ROUTE_B, upstream: { url: upstreamB.url } },
    ],
    authorization_server: {
      enabled: true,
      issuer: origin,
      state_dir: stateDir,
      users: [
        { username: "alice", password_hash: await cheapHash(PASSWORD), scopes: ["mcp:read"] },
      ],
      clients: [
        {
          client_id: "ci-bot",
          client_secret_hash: await cheapHash(CI_SECRET),
          scopes: ["mcp:read"],
        },
      ],
    },
  });
});

afterAll(async () => {
  await gw?.stop();
  await Promise.all([upstreamA?.close(), upstreamB?.close()]);
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** POSTs an MCP initialize to `route`; the status and the challenge, body read. */
async function initializeAt(route: string, token: string) {
  const res = await fetch(`${origin}${route}`, {
    method: "POST",
    headers: { ...POST_HEADERS, authorization: `Bearer ${token}` },
    body: INITIALIZE,
  });
  await res.arrayBuffer();
  return { status: res.status, challenge: res.headers.get("www-authenticate") ?? "" };
}

/** An authorization request of `clientId` for `resource` (PKCE S256), and its verifier. */
function authorizeRequest(clientId: string, resource: string): { url: URL; verifier: string } {
  const verifier = randomBytes(32).toString("base64url");
  const url = new URL(`${origin}/oauth/authorize`);
  url.search = new URLSearchParams({
    client_id: clientId,
    redirect_uri: REDIRECT,
    response_type: "code",
    scope: "mcp:read",
    state: randomBytes(8).toString("hex"),
    code_challenge: createHash("sha256").update(verifier).digest("base64url"),
    code_challenge_method: "S256",
    resource,
  }).toString();
  return { url, verifier };
}

/** A user's code for `resource`, through the login and consent pages, and its verifier. */
async function authorizeCode(clientId: string, resource: string) {
  const { url, verifier } = authorizeRequest(clientId, resource);
  const { redirect } = await logInAndConsent(url, REDIRECT, {
    username: "alice",
    password: PASSWORD,
  });
  return { code: redirect.searchParams.get("code") as string, verifier };
}

interface Tokens {
  access_token: string;
  refresh_token?: string;
}

describe("a token of the embedded authorization server, with two routes", () => {
  it("is refused on the route it was not issued for, and nothing reaches that route's upstream", async () => {
    // A user's token for route A (authorization code), a machine's for route B (client
    // credentials): both name the route they were asked for as their resource.
    const clientId = await registerPublicClient(origin, "two-routes", REDIRECT);
    const { code, verifier } = await authorizeCode(clientId, `${origin}${ROUTE_A}`);
    const exchanged = await exchangeCode(origin, {
      clientId,
      code,
      verifier,
      redirectUri: REDIRECT,
    });
    expect(exchanged.status).toBe(200);
    const forA = ((await exchanged.json()) as Tokens).access_token;
    const issued = await fetch(`${origin}/oauth/token`, {
      method: "POST",
      headers: { authorization: `Basic ${Buffer.from(`ci-bot:${CI_SECRET}`).toString("base64")}` },
      body: new URLSearchParams({
        grant_type: "client_credentials",
        scope: "mcp:read",
        resource: `${origin}${ROUTE_B}`,
      }),
    });
    expect(issued.status).toBe(200);
    const forB = ((await issued.json()) as Tokens).access_token;
    expect(decodeJwt(forA)).toMatchObject({ aud: `${origin}${ROUTE_A}`, sub: "alice" });
    expect(decodeJwt(forB)).toMatchObject({ aud: `${origin}${ROUTE_B}`, sub: "ci-bot" });

    // Each works where it belongs, which also puts it in that route's verified-token cache.
    expect((await initializeAt(ROUTE_A, forA)).status).toBe(200);
    expect((await initializeAt(ROUTE_B, forB)).status).toBe(200);

    const before = { a: upstreamA.requests(), b: upstreamB.requests() };
    const aAtB = await initializeAt(ROUTE_B, forA);
    expect(aAtB.status).toBe(401);
    expect(aAtB.challenge).toContain('error="invalid_token"');
    expect((await gw.auditRecords(1)).at(-1)).toMatchObject({
      route: ROUTE_B,
      auth_result: "bad_audience",
      status: 401,
    });
    const bAtA = await initializeAt(ROUTE_A, forB);
    expect(bAtA.status).toBe(401);
    expect(bAtA.challenge).toContain('error="invalid_token"');
    expect((await gw.auditRecords(1)).at(-1)).toMatchObject({
      route: ROUTE_A,
      auth_result: "bad_audience",
      status: 401,
    });
    expect({ a: upstreamA.requests(), b: upstreamB.requests() }).toEqual(before);
  });
});

describe("state_dir", () => {
  it("is made 0700, and the signing and cookie keys in it 0600, also after a key rotation", async () => {
    const mode = async (file: string) => (await stat(file)).mode & 0o777;
    const keyFile = path.join(stateDir, "authorization-server.json");
    expect((await mode(stateDir)).toString(8)).toBe("700");
    expect((await mode(keyFile)).toString(8)).toBe("600");
    // rotate-signing-key rewrites the file (a new one renamed over it): still 0600.
    const out = new PassThrough();
    expect(await rotateKey(gw.configFile, out, new PassThrough())).toBe(0);
    expect(String(out.read())).toContain(`new signing key mcpgw-`);
    expect((await mode(keyFile)).toString(8)).toBe("600");
    expect((await mode(stateDir)).toString(8)).toBe("700");
  });
});

describe("a replayed authorization code", () => {
  it("gets the access token it issued refused at the MCP endpoint, though it was verified before", async () => {
    const clientId = await registerPublicClient(origin, "replayer", REDIRECT);
    const { code, verifier } = await authorizeCode(clientId, `${origin}${ROUTE_A}`);
    const exchange = () =>
      exchangeCode(origin, { clientId, code, verifier, redirectUri: REDIRECT });
    const first = await exchange();
    expect(first.status).toBe(200);
    const { access_token: accessToken } = (await first.json()) as Tokens;
    // Accepted, and so cached as verified, before the replay.
    expect((await initializeAt(ROUTE_A, accessToken)).status).toBe(200);

    const replay = await exchange();
    expect(replay.status).toBe(400);
    expect(await replay.json()).toMatchObject({ error: "invalid_grant" });
    // oidc-provider revokes the grant of a replayed code; the answer leaves once the gateway
    // has recorded its tokens as revoked, so the very next request is refused.
    const refused = await initializeAt(ROUTE_A, accessToken);
    expect(refused.status).toBe(401);
    expect(refused.challenge).toContain('error="invalid_token"');
    expect((await gw.auditRecords(1)).at(-1)).toMatchObject({
      route: ROUTE_A,
      auth_result: "revoked",
      status: 401,
      sub: "alice",
      oauth_client_id: clientId,
    });
  });
});

/** A browser's cookie jar and manual redirects, to look at each page's response. */
class Browser {
  readonly #cookies = new Map<string, string>();

  async go(url: string, form?: Record<string, string>): Promise<Response> {
    const res = await fetch(new URL(url, origin), {
      method: form ? "POST" : "GET",
      redirect: "manual",
      headers: {
        cookie: [...this.#cookies].map(([name, value]) => `${name}=${value}`).join("; "),
        ...(form && { "content-type": "application/x-www-form-urlencoded" }),
      },
      ...(form && { body: new URLSearchParams(form).toString() }),
    });
    for (const line of res.headers.getSetCookie()) {
      const [pair = ""] = line.split(";");
      const at = pair.indexOf("=");
      this.#cookies.set(pair.slice(0, at).trim(), pair.slice(at + 1).trim());
    }
    return res;
  }

  /** Follows redirects from `url` to the first page that is not one; with its URL. */
  async page(url: string, form?: Record<string, string>): Promise<{ res: Response; at: string }> {
    let at = new URL(url, origin).href;
    let res = await this.go(at, form);
    for (let hops = 0; res.status >= 300 && res.status < 400; hops++) {
      if (hops > 10) throw new Error("too many redirects");
      await res.arrayBuffer();
      at = new URL(res.headers.get("location") ?? "", at).href;
      res = await this.go(at);
    }
    return { res, at };
  }
}

/** The page's headers docs/security.md names, and whether it loads or runs anything. */
async function pageOf(res: Response) {
  const body = await res.text();
  return {
    status: res.status,
    headers: Object.fromEntries(
      Object.keys(PAGE_HEADERS).map((name) => [name, res.headers.get(name)]),
    ),
    loadsOrRuns: /<script|<iframe|<link|\ssrc=|\shref=|@import|url\(/i.test(body),
  };
}

function authorizeUrl(clientId: string): string {
  return authorizeRequest(clientId, `${origin}${ROUTE_A}`).url.href;
}

describe("the login and consent pages", () => {
  it("are sent with a CSP that loads, runs and frames nothing, X-Frame-Options DENY and no-store", async () => {
    const clientId = await registerPublicClient(origin, "headers", REDIRECT);
    const browser = new Browser();
    const login = await browser.page(authorizeUrl(clientId));
    expect(login.at).toMatch(/\/oauth\/interaction\//);
    const expected = { headers: PAGE_HEADERS, loadsOrRuns: false };
    expect(await pageOf(login.res)).toEqual({ status: 200, ...expected });
    // The page again after a wrong password.
    const wrong = await browser.page(login.at, { username: "alice", password: "not it" });
    expect(await pageOf(wrong.res)).toEqual({ status: 401, ...expected });
    const consent = await browser.page(login.at, { username: "alice", password: PASSWORD });
    expect(consent.at).not.toBe(login.at);
    const consentPage = await pageOf(consent.res);
    expect(consentPage).toEqual({ status: 200, ...expected });
    // The error page: the consent form posted without the browser's cookies.
    const forged = await fetch(consent.at, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "decision=allow",
    });
    expect(await pageOf(forged)).toEqual({ status: 400, ...expected });
  });

  it("logs a failed login with the username and address, and never a password", async () => {
    const wrongPassword = "Tr0ub4dor &3 wrong guess";
    const clientId = await registerPublicClient(origin, "log-check", REDIRECT);
    const browser = new Browser();
    const login = await browser.page(authorizeUrl(clientId));
    const refused = await browser.page(login.at, { username: "alice", password: wrongPassword });
    expect(refused.res.status).toBe(401);
    const signedIn = await browser.page(login.at, { username: "alice", password: PASSWORD });
    expect(signedIn.res.status).toBe(200);
    await signedIn.res.arrayBuffer();

    expect(gw.logs.filter((line) => line.msg === "login failed").at(-1)).toMatchObject({
      level: "info",
      username: "alice",
      remote_addr: "127.0.0.1",
    });
    // Logs at debug, and the audit file: neither password, as typed or as the form sent it.
    const everything = [gw.rawLogs(), JSON.stringify(await gw.auditRecords(0))].join("\n");
    for (const password of [wrongPassword, PASSWORD]) {
      expect(everything).not.toContain(password);
      expect(everything).not.toContain(new URLSearchParams({ password }).toString().slice(9));
    }
  });
});

describe("the published demo password", () => {
  it("stops the gateway from starting unless auth.allow_demo_key is true, where it signs in", async () => {
    const users = [
      { username: "alice", password_hash: await cheapHash(PASSWORD), scopes: ["mcp:read"] },
      { username: "demo", password_hash: await cheapHash(DEMO_PASSWORD), scopes: ["mcp:read"] },
    ];
    const dir = await mkdtemp(path.join(tmpdir(), "mcpgw-demo-password-"));
    const configFile = path.join(dir, "mcpgw.yaml");
    try {
      await writeFile(
        configFile,
        stringify({
          listen: "127.0.0.1:0",
          upstream: { url: upstreamA.url },
          audit: { path: path.join(dir, "audit.jsonl") },
          authorization_server: {
            enabled: true,
            issuer: "http://127.0.0.1:8080",
            state_dir: path.join(dir, "state"),
            users,
          },
        }),
      );
      const refused = await Gateway.start({ configFile, log: createLogger("silent") }).then(
        async (started) => {
          await started.shutdown("test");
          return undefined;
        },
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(ConfigError);
      // Only the demo user is named, at its line, with what to do.
      const problems = (refused as ConfigError).problems;
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(
        /mcpgw\.yaml:\d+:\d+ authorization_server\.users\[1\]\.password_hash: user "demo" has the published demo password/,
      );
      expect(problems[0]).toContain("mcpgw hash-password");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }

    // A demo config: it starts, says so, and the demo user signs in with the password.
    const port = await freePort();
    const here = `http://127.0.0.1:${port}`;
    const demo = await startGateway({
      listen: `127.0.0.1:${port}`,
      upstream: { url: upstreamA.url },
      outbound: LOOPBACK_OUTBOUND,
      auth: { allow_demo_key: true },
      authorization_server: { enabled: true, issuer: here, store: { type: "memory" }, users },
    });
    try {
      expect(demo.logs.some((line) => line.msg.includes("auth.allow_demo_key is true"))).toBe(true);
      const clientId = await registerPublicClient(here, "demo", REDIRECT);
      const url = new URL(`${here}/oauth/authorize`);
      url.search = new URLSearchParams({
        client_id: clientId,
        redirect_uri: REDIRECT,
        response_type: "code",
        scope: "mcp:read",
        state: "demo",
        code_challenge: createHash("sha256").update("v".repeat(43)).digest("base64url"),
        code_challenge_method: "S256",
      }).toString();
      const { redirect, pages } = await logInAndConsent(url, REDIRECT, {
        username: "demo",
        password: DEMO_PASSWORD,
      });
      expect(pages).toEqual(["login", "consent"]);
      expect(redirect.searchParams.get("code")).toBeTruthy();
    } finally {
      await demo.stop();
    }
  });
});
