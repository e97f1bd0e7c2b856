/**
 * Sign-in delegated to an OpenID Connect provider (`login: {type: oidc}`), for what
 * docs/security.md (G34) listed as not tested: an ID token whose `nonce` is not the one the
 * gateway sent is refused, and a callback that comes back after ten minutes is refused (here on
 * the memory store; test/integration/authorization-server-redis-gaps.test.ts does it on Redis).
 *
 * The provider is a minimal one of this file's own, because a real one (oidc-provider) never
 * issues an ID token with another nonce: discovery, an authorization endpoint that sends the
 * browser straight back with a code, a token endpoint that checks the client and PKCE and signs
 * an ES256 ID token with the key its JWKS publishes.
 */
import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { freePort } from "../helpers/fake-upstreams.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { LoginRefused, logInAndConsent } from "../helpers/login-driver.js";
import { authorizationRequest, registerPublicClient } from "../helpers/oauth-flow.js";

const CLIENT_ID = "mcpgw";
const CLIENT_SECRET = "minimal-idp-secret-0123456789";
const REDIRECT = "http://127.0.0.1:53682/callback";

interface MinimalProvider {
  issuer: string;
  /** When set, the ID tokens carry this nonce instead of the one the sign-in sent. */
  nonceOverride: string | undefined;
  /** Code exchanges it answered with an ID token. */
  idTokensIssued: number;
  /** The nonces the authorization requests carried, in order. */
  noncesReceived: string[];
  close(): Promise<void>;
}

async function startMinimalProvider(redirectUri: string): Promise<MinimalProvider> {
  const { privateKey, publicKey } = await generateKeyPair("ES256");
  const jwk = { ...(await exportJWK(publicKey)), kid: "minimal-1", alg: "ES256", use: "sig" };
  const codes = new Map<string, { nonce: string; challenge: string }>();
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const provider: MinimalProvider = {
    issuer,
    nonceOverride: undefined,
    idTokensIssued: 0,
    noncesReceived: [],
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  server.on("request", async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", issuer);
    if (url.pathname === "/.well-known/openid-configuration") {
      json(res, 200, {
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
      });
      return;
    }
    if (url.pathname === "/jwks") {
      json(res, 200, { keys: [jwk] });
      return;
    }
    if (url.pathname === "/authorize") {
      const params = url.searchParams;
      if (params.get("client_id") !== CLIENT_ID || params.get("redirect_uri") !== redirectUri) {
        json(res, 400, { error: "invalid_request" });
        return;
      }
      const nonce = params.get("nonce") ?? "";
      provider.noncesReceived.push(nonce);
      const code = randomBytes(16).toString("base64url");
      codes.set(code, { nonce, challenge: params.get("code_challenge") ?? "" });
      const back = new URL(redirectUri);
      back.search = new URLSearchParams({ code, state: params.get("state") ?? "" }).toString();
      res.writeHead(302, { location: back.href });
      res.end();
      return;
    }
    if (url.pathname === "/token" && req.method === "POST") {
      let body = "";
      for await (const chunk of req) body += chunk;
      const form = new URLSearchParams(body);
      const basic = `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString("base64")}`;
      const issued = codes.get(form.get("code") ?? "");
      codes.delete(form.get("code") ?? "");
      const verifier = form.get("code_verifier") ?? "";
      if (
        req.headers.authorization !== basic ||
        issued === undefined ||
        createHash("sha256").update(verifier).digest("base64url") !== issued.challenge
      ) {
        json(res, 400, { error: "invalid_grant" });
        return;
      }
      const idToken = await new SignJWT({
        nonce: provider.nonceOverride ?? issued.nonce,
        email: "carol@example.com",
      })
        .setProtectedHeader({ alg: "ES256", kid: jwk.kid })
        .setIssuer(issuer)
        .setAudience(CLIENT_ID)
        .setSubject("carol")
        .setIssuedAt()
        .setExpirationTime("5m")
        .sign(privateKey);
      provider.idTokensIssued++;
      json(res, 200, { access_token: "opaque", token_type: "Bearer", id_token: idToken });
      return;
    }
    res.writeHead(404).end();
  });
  return provider;
}

let upstream: ExampleServer;
let provider: MinimalProvider;
let gw: TestGateway;
let here: string;
const callbackUrl = () => `${here}/oauth/login/callback`;

beforeAll(async () => {
  upstream = await startExampleServer();
  const port = await freePort();
  here = `http://127.0.0.1:${port}`;
  provider = await startMinimalProvider(callbackUrl());
  gw = await startGateway({
    listen: `127.0.0.1:${port}`,
    upstream: { url: upstream.url },
    authorization_server: {
      enabled: true,
      issuer: here,
      store: { type: "memory" },
      login: {
        type: "oidc",
        issuer: provider.issuer,
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        scopes: ["mcp:read"],
        username_claim: "email",
      },
    },
  });
});

afterEach(() => {
  provider.nonceOverride = undefined;
  vi.useRealTimers();
});

afterAll(async () => {
  await gw?.stop();
  await Promise.all([provider?.close(), upstream?.close()]);
});

function authorizationUrl(clientId: string): URL {
  return new URL(
    authorizationRequest({
      issuer: here,
      clientId,
      redirectUri: REDIRECT,
      scope: "mcp:read",
      resource: `${here}/mcp`,
    }).url,
  );
}

/** Through the provider's sign-in, up to (not into) its redirect back to the gateway. */
async function atTheProvidersRedirect(clientId: string): Promise<URL> {
  const { redirect, pages } = await logInAndConsent(authorizationUrl(clientId), callbackUrl(), {
    username: "unused",
    password: "unused",
  });
  expect(pages).toEqual([]);
  return redirect;
}

describe("sign-in through an OpenID Connect provider", () => {
  it("refuses an ID token whose nonce is not the one the gateway sent, with a page and no sign-in", async () => {
    const clientId = await registerPublicClient(here, "nonce-check", REDIRECT);
    // The provider as it should be: its ID token carries the sign-in's nonce, and the user
    // goes on to the consent page and back to the client with a code.
    const signedIn = await logInAndConsent(authorizationUrl(clientId), REDIRECT, {
      username: "unused",
      password: "unused",
    });
    expect(signedIn.pages).toEqual(["consent"]);
    expect(signedIn.redirect.searchParams.get("code")).toBeTruthy();

    // The same provider, its ID token carrying another sign-in's nonce (a replayed ID token).
    provider.nonceOverride = provider.noncesReceived[0];
    const issuedBefore = provider.idTokensIssued;
    const refused = await logInAndConsent(authorizationUrl(clientId), REDIRECT, {
      username: "unused",
      password: "unused",
    }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(LoginRefused);
    expect(refused).toMatchObject({
      status: 400,
      // The page's text, as the HTML carries it.
      message: "The sign-in provider&#39;s answer is not for this sign-in.",
    });
    // It was refused at the ID token: the code was exchanged, and the nonces differed.
    expect(provider.idTokensIssued).toBe(issuedBefore + 1);
    expect(provider.noncesReceived).toHaveLength(2);
    expect(provider.noncesReceived[1]).not.toBe(provider.noncesReceived[0]);
    // Only the first sign-in went through.
    expect(
      gw.logs.filter((line) => line.msg === "login through the OpenID Connect provider"),
    ).toHaveLength(1);
  });

  it("refuses, on the memory store, a callback that comes back after ten minutes", async () => {
    const clientId = await registerPublicClient(here, "late", REDIRECT);
    const inTime = await atTheProvidersRedirect(clientId);
    const late = await atTheProvidersRedirect(clientId);
    const startedAt = Date.now();
    // The gateway runs in this process: its clock (Date) moves on, its timers stay real.
    vi.useFakeTimers({ toFake: ["Date"], now: startedAt + 10 * 60_000 - 5_000 });
    const accepted = await fetch(inTime, { redirect: "manual" });
    await accepted.arrayBuffer();
    expect(accepted.status).toBe(303);
    expect(accepted.headers.get("location")).toMatch(/^\/oauth\/interaction\/[^?]+\?ticket=/);

    vi.setSystemTime(startedAt + 10 * 60_000 + 1_000);
    const refused = await fetch(late, { redirect: "manual" });
    expect(refused.status).toBe(400);
    expect(refused.headers.get("location")).toBeNull();
    expect(await refused.text()).toContain("This sign-in has expired or was not started here.");
  });
});
