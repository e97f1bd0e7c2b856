/**
 * The embedded authorization server, driven by the official SDK client headless: discovery
 * from the 401, dynamic registration, authorize with PKCE, login and consent pages, code,
 * token, the MCP call through the gateway, refresh, revocation.
 */

import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { OAuthClientProvider } from "@modelcontextprotocol/sdk/client/auth.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type {
  OAuthClientInformationFull,
  OAuthClientMetadata,
  OAuthTokens,
} from "@modelcontextprotocol/sdk/shared/auth.js";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { sqliteAvailable } from "../../src/authorization-server/store.js";
import { loadConfigFile } from "../../src/config/load.js";
import { ConfigError } from "../../src/errors.js";
import { preflight } from "../../src/runtime/preflight.js";
import { unusedPortUrl } from "../helpers/fake-upstreams.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { logInAndConsent } from "../helpers/login-driver.js";
import { INITIALIZE, POST_HEADERS } from "../helpers/mcp-client.js";
import { exchangeCode } from "../helpers/oauth-flow.js";
import { startIdentityProvider } from "../helpers/oidc-identity-provider.js";

const PASSWORD = "correct horse battery staple";
const CI_SECRET = "ci-bot-secret-0123456789";
const REDIRECT = "http://127.0.0.1:53682/callback";

let upstream: ExampleServer;
let gw: TestGateway;
let origin: string;

beforeAll(async () => {
  upstream = await startExampleServer();
  const port = new URL(await unusedPortUrl()).port;
  origin = `http://127.0.0.1:${port}`;
  gw = await startGateway({
    listen: `127.0.0.1:${port}`,
    upstream: { url: upstream.url },
    auth: { oauth: { required_scopes: ["mcp:read"] } },
    cors: { allowed_origins: ["http://localhost:6274"] },
    authorization_server: {
      enabled: true,
      issuer: origin,
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
  await upstream?.close();
});

/** An MCP client application's OAuth state, with a user who logs in when sent to the AS. */
class HeadlessClient implements OAuthClientProvider {
  client: OAuthClientInformationFull | undefined;
  saved: OAuthTokens | undefined;
  verifier = "";
  code: string | undefined;
  pages: string[] = [];
  get redirectUrl() {
    return REDIRECT;
  }
  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: "Headless Test Client",
      redirect_uris: [REDIRECT],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  clientInformation() {
    return this.client;
  }
  saveClientInformation(info: OAuthClientInformationFull) {
    this.client = info;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(tokens: OAuthTokens) {
    this.saved = tokens;
  }
  saveCodeVerifier(verifier: string) {
    this.verifier = verifier;
  }
  codeVerifier() {
    return this.verifier;
  }
  async redirectToAuthorization(url: URL) {
    expect(url.searchParams.get("code_challenge_method")).toBe("S256");
    const { redirect, pages } = await logInAndConsent(url, REDIRECT, {
      username: "alice",
      password: PASSWORD,
    });
    this.pages = pages;
    expect(redirect.searchParams.get("iss")).toBe(origin);
    this.code = redirect.searchParams.get("code") ?? undefined;
  }
}

async function connect(provider: HeadlessClient) {
  const transport = new StreamableHTTPClientTransport(new URL(`${origin}/mcp`), {
    authProvider: provider,
  });
  const client = new Client({ name: "headless", version: "0" });
  await client.connect(transport);
  return { client, transport };
}

describe("the embedded authorization server", () => {
  it("publishes RFC 8414 metadata, and the route's RFC 9728 document names it", async () => {
    const metadata = (await (
      await fetch(`${origin}/.well-known/oauth-authorization-server`)
    ).json()) as Record<string, unknown>;
    expect(metadata).toMatchObject({
      issuer: origin,
      authorization_endpoint: `${origin}/oauth/authorize`,
      token_endpoint: `${origin}/oauth/token`,
      registration_endpoint: `${origin}/oauth/register`,
      code_challenge_methods_supported: ["S256"],
      authorization_response_iss_parameter_supported: true,
    });
    expect(metadata.response_types_supported).toContain("code");
    expect(metadata.revocation_endpoint).toBe(`${origin}/oauth/revoke`);
    const resource = await (
      await fetch(`${origin}/.well-known/oauth-protected-resource/mcp`)
    ).json();
    expect(resource).toMatchObject({
      resource: `${origin}/mcp`,
      authorization_servers: [origin],
      scopes_supported: ["mcp:read"],
    });
  });

  it("takes the SDK client from a 401 through registration, login, consent and token to a tool call", async () => {
    const provider = new HeadlessClient();
    await expect(connect(provider)).rejects.toThrow(/Unauthorized/);
    expect(provider.pages).toEqual(["login", "consent"]);
    expect(provider.client?.client_id).toBeTruthy();
    // The SDK's first connect stops at the redirect; the application resumes with the code.
    const transport = new StreamableHTTPClientTransport(new URL(`${origin}/mcp`), {
      authProvider: provider,
    });
    await transport.finishAuth(provider.code as string);
    const access = decodeJwt(provider.saved?.access_token as string);
    expect(access).toMatchObject({ iss: origin, aud: `${origin}/mcp`, sub: "alice" });
    expect(String(access.scope).split(" ")).toContain("mcp:read");
    expect(provider.saved?.refresh_token).toBeTruthy();

    const client = new Client({ name: "headless", version: "0" });
    await client.connect(transport);
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name)).toContain("echo");
    await client.close();
    const record = (await gw.auditRecords(1)).find((line) => line.method === "tools/list");
    expect(record).toMatchObject({ auth_type: "oauth", auth_result: "ok", sub: "alice" });
  });

  it("refreshes, rotating the refresh token, and refuses a revoked one", async () => {
    const provider = new HeadlessClient();
    await connect(provider).catch(() => undefined);
    const transport = new StreamableHTTPClientTransport(new URL(`${origin}/mcp`), {
      authProvider: provider,
    });
    await transport.finishAuth(provider.code as string);
    const clientId = provider.client?.client_id as string;
    const refresh = async (token: string) =>
      fetch(`${origin}/oauth/token`, {
        method: "POST",
        body: new URLSearchParams({
          grant_type: "refresh_token",
          refresh_token: token,
          client_id: clientId,
        }),
      });
    const first = provider.saved?.refresh_token as string;
    const rotated = await refresh(first);
    expect(rotated.status).toBe(200);
    const next = (await rotated.json()) as OAuthTokens;
    expect(next.refresh_token).not.toBe(first);
    expect(await initializeStatus(next.access_token)).toBe(200);
    // The rotated-out refresh token is spent: presented again, it is refused.
    expect((await refresh(first)).status).toBe(400);

    const revoked = await fetch(`${origin}/oauth/revoke`, {
      method: "POST",
      body: new URLSearchParams({ token: next.refresh_token as string, client_id: clientId }),
    });
    expect(revoked.status).toBe(200);
    expect((await refresh(next.refresh_token as string)).status).toBe(400);
    // Revoking the refresh token revokes its grant: the access tokens it issued are refused
    // at once, though they have not expired, also the ones the gateway had verified before.
    expect(await initializeStatus(next.access_token)).toBe(401);
    expect(await initializeStatus(provider.saved?.access_token)).toBe(401);
    const record = (await gw.auditRecords(1)).at(-1);
    expect(record).toMatchObject({ auth_result: "revoked", status: 401, sub: "alice" });
  });

  it("revokes a JWT access token at the revocation endpoint (RFC 7009)", async () => {
    const client = await register("revoker");
    const { code, verifier } = await authorizeCode(client);
    const tokens = (await (
      await fetch(`${origin}/oauth/token`, {
        method: "POST",
        body: new URLSearchParams({
          grant_type: "authorization_code",
          code,
          code_verifier: verifier,
          redirect_uri: REDIRECT,
          client_id: client,
        }),
      })
    ).json()) as OAuthTokens;
    expect(await initializeStatus(tokens.access_token)).toBe(200);
    const revoked = await fetch(`${origin}/oauth/revoke`, {
      method: "POST",
      body: new URLSearchParams({ token: tokens.access_token, client_id: client }),
    });
    expect(revoked.status).toBe(200);
    expect(await initializeStatus(tokens.access_token)).toBe(401);
    // Another client cannot revoke it: the request is answered 200 and changes nothing.
    const other = await authorizeCode(client);
    const second = (await (
      await exchangeCode(origin, {
        clientId: client,
        code: other.code,
        verifier: other.verifier,
        redirectUri: REDIRECT,
      })
    ).json()) as OAuthTokens;
    const foreign = await fetch(`${origin}/oauth/revoke`, {
      method: "POST",
      body: new URLSearchParams({ token: second.access_token, client_id: "someone-else" }),
    });
    expect(foreign.status).toBe(200);
    expect(await initializeStatus(second.access_token)).toBe(200);
  });

  it("refuses an authorization request without PKCE, and a wrong password", async () => {
    const registered = (await (
      await fetch(`${origin}/oauth/register`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          redirect_uris: [REDIRECT],
          token_endpoint_auth_method: "none",
          client_name: "no-pkce",
        }),
      })
    ).json()) as { client_id: string };
    const noPkce = new URL(`${origin}/oauth/authorize`);
    noPkce.search = new URLSearchParams({
      client_id: registered.client_id,
      redirect_uri: REDIRECT,
      response_type: "code",
      state: "s1",
      scope: "mcp:read",
    }).toString();
    const refused = await fetch(noPkce, { redirect: "manual" });
    const location = new URL(refused.headers.get("location") ?? "", origin);
    expect(location.searchParams.get("error")).toBe("invalid_request");
    expect(location.searchParams.get("error_description")).toMatch(/PKCE/);

    const wrong = new HeadlessClient();
    wrong.redirectToAuthorization = async (url: URL) => {
      await expect(
        logInAndConsent(url, REDIRECT, { username: "alice", password: "wrong" }),
      ).rejects.toThrow(/Wrong username or password/);
    };
    await expect(connect(wrong)).rejects.toThrow(/Unauthorized/);
  });

  it("refuses a replayed code, a foreign resource, an unregistered redirect URI, and brute force", async () => {
    const client = await register("negative");
    // A code used twice: the second exchange is refused.
    const { code, verifier } = await authorizeCode(client);
    const exchange = () =>
      fetch(`${origin}/oauth/token`, {
        method: "POST",
        body: new URLSearchParams({
          grant_type: "authorization_code",
          code,
          code_verifier: verifier,
          redirect_uri: REDIRECT,
          client_id: client,
        }),
      });
    const first = await exchange();
    expect(first.status).toBe(200);
    const tokens = (await first.json()) as OAuthTokens;
    const replay = await exchange();
    expect(replay.status).toBe(400);
    expect(await replay.json()).toMatchObject({ error: "invalid_grant" });
    // oidc-provider revokes what the code issued when it is replayed: the refresh token.
    const refreshed = await fetch(`${origin}/oauth/token`, {
      method: "POST",
      body: new URLSearchParams({
        grant_type: "refresh_token",
        refresh_token: tokens.refresh_token as string,
        client_id: client,
      }),
    });
    expect(refreshed.status).toBe(400);

    // A resource that is not one of the gateway's routes.
    const foreign = await fetch(
      authorizeUrl(client, { resource: "https://elsewhere.example/mcp" }),
      { redirect: "manual" },
    );
    const refusal = new URL(foreign.headers.get("location") ?? "", origin);
    expect(refusal.searchParams.get("error")).toBe("invalid_target");

    // A redirect URI the client did not register is never redirected to.
    const mismatch = await fetch(
      authorizeUrl(client, { redirect_uri: "https://attacker.example/callback" }),
      { redirect: "manual" },
    );
    expect(mismatch.status).toBe(400);
    expect(mismatch.headers.get("location")).toBeNull();
    expect(await mismatch.text()).toContain("redirect_uri");

    // PKCE: the plain method is refused; a code with the wrong verifier does not exchange.
    const plain = await fetch(
      authorizeUrl(client, { code_challenge_method: "plain", code_challenge: "x".repeat(43) }),
      { redirect: "manual" },
    );
    expect(new URL(plain.headers.get("location") ?? "", origin).searchParams.get("error")).toBe(
      "invalid_request",
    );
    const other = await authorizeCode(client);
    const wrongVerifier = await exchangeCode(origin, {
      clientId: client,
      code: other.code,
      verifier: randomBytes(32).toString("base64url"),
      redirectUri: REDIRECT,
    });
    expect(wrongVerifier.status).toBe(400);
    expect(await wrongVerifier.json()).toMatchObject({ error: "invalid_grant" });

    // A client nobody registered gets an error page, not a redirect.
    const unknown = await fetch(authorizeUrl("nobody-registered-this"), { redirect: "manual" });
    expect(unknown.status).toBe(400);
    expect(unknown.headers.get("location")).toBeNull();

    // CSRF: the consent form posted without the browser's interaction cookie does nothing.
    const started = await fetch(authorizeUrl(client), { redirect: "manual" });
    const interaction = started.headers.get("location") as string;
    expect(interaction).toMatch(/^\/oauth\/interaction\//);
    const forged = await fetch(new URL(interaction, origin), {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "decision=allow",
      redirect: "manual",
    });
    expect(forged.status).toBe(400);
    expect(forged.headers.get("location")).toBeNull();

    // Five wrong passwords, then even the right one is refused for a while.
    const url = authorizeUrl(client);
    for (let attempt = 0; attempt < 5; attempt++) {
      await expect(
        logInAndConsent(url, REDIRECT, { username: "bob", password: "guess" }),
      ).rejects.toMatchObject({ status: 401 });
    }
    await expect(
      logInAndConsent(url, REDIRECT, { username: "bob", password: "guess" }),
    ).rejects.toMatchObject({ status: 429, message: expect.stringMatching(/Too many/) });
  });

  it("issues a pre-registered client a token with client_credentials, its secret checked against the hash", async () => {
    const token = (secret: string, how: "basic" | "post") =>
      fetch(`${origin}/oauth/token`, {
        method: "POST",
        headers:
          how === "basic"
            ? { authorization: `Basic ${Buffer.from(`ci-bot:${secret}`).toString("base64")}` }
            : {},
        body: new URLSearchParams({
          grant_type: "client_credentials",
          scope: "mcp:read mcp:write",
          resource: `${origin}/mcp`,
          ...(how === "post" && { client_id: "ci-bot", client_secret: secret }),
        }),
      });
    for (const how of ["basic", "post"] as const) {
      const res = await token(CI_SECRET, how);
      expect({
        how,
        status: res.status,
        body:
          res.status === 200
            ? ""
            : JSON.stringify(gw.logs.filter((l) => l.msg === "token request refused").at(-1)),
      }).toEqual({
        how,
        status: 200,
        body: "",
      });
      const { access_token: accessToken } = (await res.json()) as OAuthTokens;
      // mcp:write is not the client's: it gets the part of the request it may have.
      expect(decodeJwt(accessToken)).toMatchObject({
        sub: "ci-bot",
        client_id: "ci-bot",
        scope: "mcp:read",
      });
      expect(await initializeStatus(accessToken)).toBe(200);
    }
    const wrong = await token("not-the-secret", "basic");
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ error: "invalid_client" });
  });

  it("registers only https redirect URIs, or http ones on a loopback address", async () => {
    const status = async (uri: string, type = "web") => {
      const res = await fetch(`${origin}/oauth/register`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          redirect_uris: [uri],
          application_type: type,
          token_endpoint_auth_method: "none",
        }),
      });
      const body = (await res.json()) as { error?: string };
      return res.status === 201 ? 201 : `${res.status} ${body.error}`;
    };
    expect(await status("https://app.example/callback")).toBe(201);
    expect(await status("http://localhost:3000/callback")).toBe(201);
    expect(await status("http://127.0.0.1:8976/oauth/callback", "native")).toBe(201);
    expect(await status("http://app.example/callback")).toBe("400 invalid_redirect_uri");
    expect(await status("cursor://anysphere.cursor-retrieval/oauth/callback", "native")).toBe(
      "400 invalid_redirect_uri",
    );
    expect(await status("https://app.example/callback#fragment")).toBe("400 invalid_redirect_uri");

    // RFC 8252 §7.3: a native client's loopback redirect URI matches on any port.
    const res = await fetch(`${origin}/oauth/register`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        redirect_uris: ["http://127.0.0.1/callback"],
        application_type: "native",
        token_endpoint_auth_method: "none",
      }),
    });
    const { client_id: nativeClient } = (await res.json()) as { client_id: string };
    const anyPort = await fetch(
      authorizeUrl(nativeClient, { redirect_uri: "http://127.0.0.1:49152/callback" }),
      { redirect: "manual" },
    );
    expect(anyPort.headers.get("location")).toMatch(/^\/oauth\/interaction\//);
    const otherPath = await fetch(
      authorizeUrl(nativeClient, { redirect_uri: "http://127.0.0.1:49152/elsewhere" }),
      { redirect: "manual" },
    );
    expect(otherPath.status).toBe(400);
  });

  it("lets an allowed browser origin register a client (CORS), and no other", async () => {
    const preflight = (from: string) =>
      fetch(`${origin}/oauth/register`, {
        method: "OPTIONS",
        headers: {
          origin: from,
          "access-control-request-method": "POST",
          "access-control-request-headers": "content-type",
        },
      });
    const allowed = await preflight("http://localhost:6274");
    expect(allowed.status).toBe(204);
    expect(allowed.headers.get("access-control-allow-origin")).toBe("http://localhost:6274");
    expect((await preflight("https://attacker.example")).status).toBe(403);
    const registered = await fetch(`${origin}/oauth/register`, {
      method: "POST",
      headers: { origin: "http://localhost:6274", "content-type": "application/json" },
      body: JSON.stringify({ redirect_uris: [REDIRECT], token_endpoint_auth_method: "none" }),
    });
    expect(registered.status).toBe(201);
    expect(registered.headers.get("access-control-allow-origin")).toBe("http://localhost:6274");
  });

  it("answers a request without a token with a challenge pointing at the route's metadata", async () => {
    expect(await initializeStatus(undefined)).toBe(401);
  });
});

async function register(name: string): Promise<string> {
  const res = await fetch(`${origin}/oauth/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      redirect_uris: [REDIRECT],
      token_endpoint_auth_method: "none",
      client_name: name,
      scope: "mcp:read",
    }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { client_id: string }).client_id;
}

let pkce = { verifier: "", challenge: "" };

/** An authorization URL with PKCE S256 and state, `overrides` replacing its parameters. */
function authorizeUrl(clientId: string, overrides: Record<string, string> = {}): URL {
  const verifier = randomBytes(32).toString("base64url");
  pkce = { verifier, challenge: createHash("sha256").update(verifier).digest("base64url") };
  const url = new URL(`${origin}/oauth/authorize`);
  url.search = new URLSearchParams({
    client_id: clientId,
    redirect_uri: REDIRECT,
    response_type: "code",
    scope: "mcp:read",
    state: randomBytes(8).toString("hex"),
    code_challenge: pkce.challenge,
    code_challenge_method: "S256",
    resource: `${origin}/mcp`,
    ...overrides,
  }).toString();
  return url;
}

async function authorizeCode(clientId: string): Promise<{ code: string; verifier: string }> {
  const url = authorizeUrl(clientId);
  const { verifier } = pkce;
  const { redirect } = await logInAndConsent(url, REDIRECT, {
    username: "alice",
    password: PASSWORD,
  });
  expect(redirect.searchParams.get("state")).toBe(url.searchParams.get("state"));
  return { code: redirect.searchParams.get("code") as string, verifier };
}

async function initializeStatus(token: string | undefined): Promise<number> {
  const res = await fetch(`${origin}/mcp`, {
    method: "POST",
    headers: { ...POST_HEADERS, ...(token && { authorization: `Bearer ${token}` }) },
    body: INITIALIZE,
  });
  await res.arrayBuffer();
  return res.status;
}

describe("the authorization server's store", () => {
  const sqlite = sqliteAvailable();

  /** A gateway on `port` whose authorization server keeps its state in `stateDir`. */
  async function gatewayOn(port: string, stateDir: string, store?: { type: string }) {
    return startGateway({
      listen: `127.0.0.1:${port}`,
      upstream: { url: upstream.url },
      authorization_server: {
        enabled: true,
        issuer: `http://127.0.0.1:${port}`,
        state_dir: stateDir,
        ...(store && { store }),
        users: [
          { username: "alice", password_hash: await cheapHash(PASSWORD), scopes: ["mcp:read"] },
        ],
      },
    });
  }

  it(
    sqlite
      ? "keeps registered clients, grants and revocations across a restart (sqlite, the default)"
      : "keeps its state in memory on a Node without node:sqlite, and says so",
    async () => {
      const port = new URL(await unusedPortUrl()).port;
      const stateDir = await mkdtemp(path.join(tmpdir(), "mcpgw-as-state-"));
      const first = await gatewayOn(port, stateDir);
      const here = `http://127.0.0.1:${port}`;
      const res = await fetch(`${here}/oauth/register`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ redirect_uris: [REDIRECT], token_endpoint_auth_method: "none" }),
      });
      const { client_id: clientId } = (await res.json()) as { client_id: string };
      await first.stop();
      const second = await gatewayOn(port, stateDir);
      const found = await fetch(
        `${here}/oauth/authorize?${new URLSearchParams({
          client_id: clientId,
          redirect_uri: REDIRECT,
          response_type: "code",
          code_challenge: "x".repeat(43),
          code_challenge_method: "S256",
          state: "s",
        })}`,
        { redirect: "manual" },
      );
      await found.arrayBuffer();
      const location = found.headers.get("location") ?? "";
      if (sqlite) {
        // The client is known after the restart: the user is sent to the login page.
        expect(location).toMatch(/^\/oauth\/interaction\//);
        expect((await stat(path.join(stateDir, "authorization-server.db"))).isFile()).toBe(true);
      } else {
        // Unknown after the restart: refused without a redirect.
        expect(found.status).toBe(400);
        expect(first.logs.some((line) => line.msg.includes("no node:sqlite"))).toBe(true);
      }
      await second.stop();
    },
  );

  it("refuses store sqlite where this Node has no node:sqlite, and accepts memory", async () => {
    const file = path.join(await mkdtemp(path.join(tmpdir(), "mcpgw-as-check-")), "mcpgw.yaml");
    const config = (type: string) =>
      [
        "listen: 127.0.0.1:8080",
        `upstream: {url: "${upstream.url}"}`,
        "audit: {path: audit.jsonl}",
        "authorization_server:",
        "  enabled: true",
        '  issuer: "http://127.0.0.1:8080"',
        `  store: {type: ${type}}`,
      ].join("\n");
    await writeFile(file, config("sqlite"));
    const problems = await preflightProblems(file);
    if (sqlite) expect(problems).toEqual([]);
    else expect(problems.join("\n")).toMatch(/store\.type: sqlite needs node:sqlite/);
    await writeFile(file, config("memory"));
    expect(await preflightProblems(file)).toEqual([]);
  });
});

async function preflightProblems(file: string): Promise<readonly string[]> {
  try {
    await preflight(await loadConfigFile(file));
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
}

describe("authorization codes", () => {
  it("expire after code_ttl: a code exchanged later is refused", async () => {
    const client = await register("late");
    const { code, verifier } = await authorizeCode(client);
    // The gateway runs in this process: its clock (Date, as oidc-provider reads it) moves on
    // past the code's 120 s, its timers stay real.
    vi.useFakeTimers({ toFake: ["Date"], now: Date.now() + 121_000 });
    try {
      const late = await exchangeCode(origin, {
        clientId: client,
        code,
        verifier,
        redirectUri: REDIRECT,
      });
      expect(late.status).toBe(400);
      expect(await late.json()).toMatchObject({ error: "invalid_grant" });
      // The store no longer holds an expired code (oidc-provider would say "is expired").
      const refusal = gw.logs.filter((line) => line.msg === "token request refused").at(-1);
      expect(refusal?.detail).toMatch(/authorization code (is expired|not found)/);
    } finally {
      vi.useRealTimers();
    }
    const fresh = await authorizeCode(client);
    const inTime = await exchangeCode(origin, {
      clientId: client,
      code: fresh.code,
      verifier: fresh.verifier,
      redirectUri: REDIRECT,
    });
    expect(inTime.status).toBe(200);
  });
});

describe("sign-in delegated to an OpenID Connect provider", () => {
  it("sends the user to the provider, and issues the MCP client a token for who it says", async () => {
    const port = new URL(await unusedPortUrl()).port;
    const here = `http://127.0.0.1:${port}`;
    const idp = await startIdentityProvider({
      clientId: "mcpgw",
      clientSecret: "idp-secret-0123456789",
      redirectUri: `${here}/oauth/login/callback`,
      user: "bob",
    });
    const delegated = await startGateway({
      listen: `127.0.0.1:${port}`,
      upstream: { url: upstream.url },
      authorization_server: {
        enabled: true,
        issuer: here,
        store: { type: "memory" },
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
    try {
      const registered = await fetch(`${here}/oauth/register`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ redirect_uris: [REDIRECT], token_endpoint_auth_method: "none" }),
      });
      const { client_id: clientId } = (await registered.json()) as { client_id: string };
      const verifier = randomBytes(32).toString("base64url");
      const url = new URL(`${here}/oauth/authorize`);
      url.search = new URLSearchParams({
        client_id: clientId,
        redirect_uri: REDIRECT,
        response_type: "code",
        scope: "mcp:read",
        state: "sso",
        code_challenge: createHash("sha256").update(verifier).digest("base64url"),
        code_challenge_method: "S256",
      }).toString();
      // No password: the provider signs bob in; the gateway's consent page follows.
      const { redirect, pages } = await logInAndConsent(url, REDIRECT, {
        username: "unused",
        password: "unused",
      });
      expect(pages).toEqual(["consent"]);
      expect(idp.authorizations).toHaveLength(1);
      const sent = idp.authorizations[0] as URL;
      expect(sent.searchParams.get("code_challenge_method")).toBe("S256");
      expect(sent.searchParams.get("redirect_uri")).toBe(`${here}/oauth/login/callback`);
      const token = await exchangeCode(here, {
        clientId: clientId,
        code: redirect.searchParams.get("code") as string,
        verifier: verifier,
        redirectUri: REDIRECT,
      });
      expect(token.status).toBe(200);
      const { access_token: accessToken } = (await token.json()) as OAuthTokens;
      expect(decodeJwt(accessToken)).toMatchObject({ sub: "bob@example.com", scope: "mcp:read" });

      // A callback that did not start here is refused with a page, not a sign-in.
      const forged = await fetch(`${here}/oauth/login/callback?code=x&state=forged`);
      expect(forged.status).toBe(400);
      expect(await forged.text()).toContain("was not started here");
    } finally {
      await delegated.stop();
      await idp.close();
    }
  });
});
