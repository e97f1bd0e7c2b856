/**
 * The embedded OAuth 2.1 authorization server: oidc-provider (OpenID certified) mounted under
 * `/oauth/`, so MCP clients log in through the browser with no external identity provider.
 * What the library does not do is here: the login and consent pages, users from the config,
 * the RFC 8414 metadata document, and the tie to the gateway's routes (each route is a
 * resource, RFC 8707, and the token's `aud`). The gateway verifies the tokens with the same
 * keys, in process: no JWKS fetch.
 */
import { createHash, randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { verify } from "@node-rs/argon2";
import { createLocalJWKSet, type JWK, jwtVerify } from "jose";
import type { Config } from "../config/schema.js";
import type { Outbound } from "../lib/outbound.js";
import type { Logger } from "../log.js";
import type { SecretBox } from "../secrets/cipher.js";
import type { RedisStore } from "../store/redis.js";
import { LoginError, OidcLogin } from "./oidc-login.js";
import { importOidcProvider } from "./oidc-provider-module.js";
import { consentPage, errorPage, loginPage } from "./pages.js";
import { RedisAuthorizationStore } from "./redis-store.js";
import { type AuthorizationServerState, loadSharedState, loadState, publicJwk } from "./state.js";
import { openStore, type Store, type StoreType } from "./store.js";

export type AuthorizationServerConfig = Config["authorization_server"];
type Users = ReadonlyMap<string, AuthorizationServerConfig["users"][number]>;
type StaticClient = AuthorizationServerConfig["clients"][number] & { internalSecret: string };
type Clients = ReadonlyMap<string, StaticClient>;
/** The routes it issues tokens for; replaced by each generation (useResources). */
interface Resources {
  byIndicator: ReadonlyMap<string, Resource>;
  default: string | undefined;
}

/** A resource the server issues tokens for: an MCP route, by its public URL. */
export interface Resource {
  indicator: string;
  scopes: readonly string[];
}

/**
 * The scope of access to the gateway's MCP routes at all: granted to every user who signs in,
 * and what a client gets when it asks for no scope (RFC 6749 §3.3 lets the server use a
 * default; oidc-provider issues no token without some scope granted).
 */
export const BASE_SCOPE = "mcp";

/** Endpoints under this prefix belong to the authorization server. */
const PREFIX = "/oauth/";
const INTERACTION = "/oauth/interaction/";
/** Where the OpenID Connect provider sends users back (`login: {type: oidc}`). */
const LOGIN_CALLBACK = "/oauth/login/callback";
/** Failed logins per username and address within the window, before logins are refused. */
const LOGIN_ATTEMPTS = 5;
const LOGIN_WINDOW_MS = 15 * 60_000;
const MAX_FORM_BYTES = 16 * 1024;

export class AuthorizationServer {
  readonly issuer: string;
  /** Resolves the key of a token this server signed (jose's key resolver). */
  readonly getKey: ReturnType<typeof createLocalJWKSet>;
  readonly #provider: OidcProvider;
  /** oidc-provider's request handler (Koa composes it once). */
  readonly #handler: (req: IncomingMessage, res: ServerResponse) => void;
  readonly #users: Users;
  readonly #log: Logger;
  readonly #resources: Resources;
  readonly #failures = new Map<string, { count: number; since: number }>();
  readonly #store: Store;
  /** Set with `login: {type: oidc}`. */
  readonly #oidc: OidcLogin | undefined;
  readonly #clients: Clients;
  /** Client secrets that verified, by their digest: argon2 runs once per secret. */
  readonly #verifiedSecrets = new Map<string, string>();
  /** Revoked access tokens (their `jti`), until they expire (ms since epoch): read per request. */
  readonly #revoked: Map<string, number>;
  readonly #accessTokenTtl: number;
  /** Store writes begun by oidc-provider's events, not yet done. */
  readonly #writing = new Set<Promise<void>>();

  private constructor(
    issuer: string,
    provider: OidcProvider,
    state: AuthorizationServerState,
    parts: {
      users: Users;
      resources: Resources;
      accessTokenTtl: number;
      store: Store;
      revoked: Map<string, number>;
      clients: Clients;
      login: AuthorizationServerConfig["login"];
      outbound: Outbound;
    },
    log: Logger,
  ) {
    this.#clients = parts.clients;
    this.#oidc =
      parts.login.type === "oidc"
        ? new OidcLogin(parts.login, `${issuer}${LOGIN_CALLBACK}`, parts.store, parts.outbound)
        : undefined;
    this.#accessTokenTtl = parts.accessTokenTtl;
    this.#store = parts.store;
    this.#revoked = parts.revoked;
    // Revocations at other replicas (the shared store): refused here from the moment they land.
    parts.store.onRevoked?.((jti, until) => this.#revoked.set(jti, until));
    this.issuer = issuer;
    this.#provider = provider;
    this.#users = parts.users;
    this.#resources = parts.resources;
    this.#log = log;
    this.getKey = createLocalJWKSet({ keys: state.signingKeys.map(publicJwk) });
    // JWT access tokens are not stored by oidc-provider: the gateway keeps what it needs to
    // refuse them once their grant is revoked (refresh token revoked, code replayed).
    provider.on("access_token.issued", (token: IssuedToken) =>
      this.#track(this.#issued(token), "could not record an issued token"),
    );
    provider.on("grant.revoked", (_ctx: unknown, grantId: string) =>
      this.#track(this.#revokeGrant(grantId), "could not revoke a grant's tokens"),
    );
    // The store's writes those events started are done before the answer leaves: a client told
    // its token is revoked finds it refused at once.
    provider.use(async (_ctx: unknown, next: () => Promise<void>) => {
      await next();
      if (this.#writing.size > 0) await Promise.all(this.#writing);
    });
    // Last: Koa composes the middleware added so far when callback() is called.
    this.#handler = provider.callback();
  }

  #track(write: Promise<void>, failure: string): void {
    const tracked = write.catch((error: unknown) =>
      this.#log.error({ err: error }, `authorization server: ${failure}`),
    );
    this.#writing.add(tracked);
    void tracked.finally(() => this.#writing.delete(tracked));
  }

  /** Whether the access token `jti` has been revoked (asked by the verifier on every use). */
  isRevoked(jti: string): boolean {
    return this.#revoked.has(jti);
  }

  async #issued({ jti, grantId, exp }: IssuedToken): Promise<void> {
    if (grantId === undefined) return;
    // A JWT access token's model has no `exp` yet when it is issued: its lifetime is ours.
    const until = exp === undefined ? Date.now() + this.#accessTokenTtl : exp * 1000;
    await this.#store.issued(jti, grantId, until);
  }

  async #revokeGrant(grantId: string): Promise<void> {
    for (const [jti, until] of await this.#store.tokensOfGrant(grantId)) {
      await this.#revokeToken(jti, until);
    }
    await this.#store.forgetGrant(grantId);
  }

  async #revokeToken(jti: string, until: number): Promise<void> {
    this.#revoked.set(jti, until);
    await this.#store.saveRevoked(jti, until);
    // An expired token is refused without the list: what has expired goes.
    if (this.#revoked.size % 256 === 0) {
      const now = Date.now();
      for (const [id, end] of this.#revoked) if (end < now) this.#revoked.delete(id);
    }
  }

  static async start(
    config: AuthorizationServerConfig,
    issuer: string,
    log: Logger,
    options: {
      persist?: boolean;
      store: StoreType;
      /** With store redis: the connection, and the box its signing keys are sealed with. */
      shared?: { redis: RedisStore; box: SecretBox };
      /** The guard of the sign-in provider's fetches (`login: {type: oidc}`). */
      outbound: Outbound;
    },
  ): Promise<AuthorizationServer> {
    const persist = options.persist !== false;
    // check-config (persist: false) opens no file and no connection: memory is enough to check.
    const shared = persist && options.store === "redis" ? options.shared : undefined;
    const state = shared
      ? await loadSharedState(shared.redis, shared.box, config.state_dir)
      : await loadState(config.state_dir, { persist });
    const store: Store = shared
      ? new RedisAuthorizationStore(shared.redis, shared.box, log)
      : openStore(
          !persist || options.store === "redis" ? "memory" : options.store,
          config.state_dir,
        );
    const revoked = await store.revokedTokens();
    const { default: Provider, errors } = await importOidcProvider<OidcProviderModule>();
    const users: Users = new Map(config.users.map((user) => [user.username, user]));
    // oidc-provider compares client secrets in the clear; the config holds argon2id hashes. So
    // each pre-registered client gets a random secret of this process's own, which the token
    // endpoint puts in place of the presented one once that verifies against the hash.
    const clients: Clients = new Map(
      config.clients.map((client) => [
        client.client_id,
        { ...client, internalSecret: randomBytes(32).toString("base64url") },
      ]),
    );
    const resources: Resources = { byIndicator: new Map(), default: undefined };
    const provider = new Provider(issuer, {
      adapter: (model: string) => store.adapter(model),
      clients: [...clients.values()].map((client) => ({
        client_id: client.client_id,
        client_secret: client.internalSecret,
        grant_types: client.grant_types,
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: "client_secret_basic",
      })),
      jwks: { keys: state.signingKeys },
      cookies: { keys: state.cookieKeys },
      routes: {
        authorization: "/oauth/authorize",
        token: "/oauth/token",
        registration: "/oauth/register",
        revocation: "/oauth/revoke",
        jwks: "/oauth/jwks",
        end_session: "/oauth/logout",
        userinfo: "/oauth/userinfo",
        introspection: "/oauth/introspect",
        pushed_authorization_request: "/oauth/par",
        code_verification: "/oauth/device",
        device_authorization: "/oauth/device/auth",
        backchannel_authentication: "/oauth/backchannel",
        challenge: "/oauth/challenge",
        credential: "/oauth/credential",
      },
      scopes: ["openid", "offline_access", ...allScopes(config)],
      claims: { openid: ["sub"] },
      clientDefaults: {
        grant_types: ["authorization_code", "refresh_token"],
        response_types: ["code"],
        token_endpoint_auth_method: "none",
        id_token_signed_response_alg: "ES256",
      },
      // A user of the OpenID Connect provider was vouched for by it when the grant was made.
      findAccount: (_ctx: unknown, id: string) =>
        users.has(id) || config.login.type === "oidc"
          ? { accountId: id, claims: () => ({ sub: id }) }
          : undefined,
      interactions: {
        url: (_ctx: unknown, interaction: { uid: string }) => `${INTERACTION}${interaction.uid}`,
      },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        // An https:// client_id names its metadata document, fetched (at most 2.5 s, cached as
        // its Cache-Control says, from public addresses only unless allowed: oidc-provider's
        // fetch refuses special-use addresses).
        clientIdMetadataDocument: {
          enabled: config.client_id_metadata_documents.enabled,
          ack: "draft-02",
          allowClient: (_ctx: unknown, client: { redirectUris?: string[] }) =>
            (client.redirectUris ?? []).every(isAcceptableRedirectUri),
        },
        registration: { enabled: true },
        revocation: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => resources.default,
          useGrantedResource: () => true,
          getResourceServerInfo: (
            _ctx: unknown,
            indicator: string,
            client: { clientId: string },
          ) => {
            const resource = resources.byIndicator.get(indicator);
            if (resource === undefined) {
              throw new errors.InvalidTarget(`${indicator} is not an MCP endpoint of this gateway`);
            }
            // A pre-registered client gets at most its own scopes; others what the user grants.
            const own = clients.get(client.clientId);
            return {
              scope: (own ? [BASE_SCOPE, ...own.scopes] : allScopes(config)).join(" "),
              audience: indicator,
              accessTokenTTL: Math.round(config.access_token_ttl / 1000),
              accessTokenFormat: "jwt",
              jwt: { sign: { alg: "ES256" } },
            };
          },
        },
      },
      pkce: { required: () => true },
      ...(config.client_id_metadata_documents.allow_private_addresses && {
        // Without oidc-provider's dispatcher, which refuses special-use addresses.
        fetch: (
          url: string,
          { dispatcher: _ssrfGuard, ...options }: RequestInit & { dispatcher?: unknown },
        ) => fetch(url, options),
      }),
      // The MCP SDKs do not ask for offline_access; a client allowed to refresh gets a token.
      issueRefreshToken: (_ctx: unknown, client: { grantTypeAllowed(type: string): boolean }) =>
        client.grantTypeAllowed("refresh_token"),
      ttl: {
        AccessToken: Math.round(config.access_token_ttl / 1000),
        AuthorizationCode: Math.round(config.code_ttl / 1000),
        RefreshToken: Math.round(config.refresh_token_ttl / 1000),
        Grant: Math.round(config.refresh_token_ttl / 1000),
        Interaction: 3600,
        Session: 14 * 24 * 3600,
      },
      renderError: (
        ctx: { type: string; body: string },
        out: { error: string; error_description?: string },
      ) => {
        ctx.type = "html";
        ctx.body = errorPage("Sign-in failed", out.error_description ?? out.error);
      },
    });
    // Refused token requests, with oidc-provider's reason (the response only says invalid_client).
    provider.on("grant.error", (_ctx: unknown, error: Error & { error_detail?: string }) =>
      log.info({ error: error.message, detail: error.error_detail }, "token request refused"),
    );
    provider.on("server_error", (_ctx: unknown, error: Error) =>
      log.error({ err: error }, "authorization server: internal error"),
    );
    return new AuthorizationServer(
      issuer,
      provider,
      state,
      {
        users,
        resources,
        accessTokenTtl: config.access_token_ttl,
        store,
        revoked,
        clients,
        login: config.login,
        outbound: options.outbound,
      },
      log,
    );
  }

  /** The routes whose tokens it issues; the first is the default `resource`. */
  useResources(resources: readonly Resource[]): void {
    this.#resources.byIndicator = new Map(
      resources.map((resource) => [resource.indicator, resource]),
    );
    this.#resources.default = resources[0]?.indicator;
  }

  /** Whether `path` is one of its endpoints or metadata documents. */
  handles(path: string): boolean {
    return (
      path.startsWith(PREFIX) ||
      path === "/.well-known/openid-configuration" ||
      path === "/.well-known/oauth-authorization-server"
    );
  }

  handle(req: IncomingMessage, res: ServerResponse, path: string): void {
    if (path === "/oauth/token" && req.method === "POST" && this.#clients.size > 0) {
      this.#token(req, res).catch((error: unknown) => {
        this.#log.error({ err: error }, "authorization server: token request failed");
        if (!res.headersSent) res.writeHead(500).end();
      });
      return;
    }
    if (path === "/oauth/register" && req.method === "POST") {
      this.#register(req, res).catch((error: unknown) => {
        this.#log.error({ err: error }, "authorization server: registration failed");
        if (!res.headersSent) res.writeHead(500).end();
      });
      return;
    }
    if (path === "/oauth/revoke" && req.method === "POST") {
      this.#revoke(req, res).catch((error: unknown) => {
        this.#log.error({ err: error }, "authorization server: revocation failed");
        if (!res.headersSent) res.writeHead(500).end();
      });
      return;
    }
    if (path === "/oauth/authorize" && req.method === "GET") withDefaultScope(req);
    if (path === LOGIN_CALLBACK && this.#oidc) {
      void this.#oidcCallback(req, res, this.#oidc);
      return;
    }
    if (path.startsWith(INTERACTION)) {
      this.#interaction(req, res, path.slice(INTERACTION.length)).catch((error: unknown) => {
        this.#log.error({ err: error }, "authorization server: interaction failed");
        if (!res.headersSent) html(res, 500, errorPage("Error", "Something went wrong."));
      });
      return;
    }
    // RFC 8414: the same metadata as OpenID discovery, at the OAuth well-known path.
    if (path === "/.well-known/oauth-authorization-server") {
      req.url = "/.well-known/openid-configuration";
    }
    this.#handler(req, res);
  }

  close(): void {
    this.#store.close();
  }

  /**
   * RFC 7591 registration, with one rule oidc-provider does not have: every redirect URI is
   * https, or http on a loopback address (RFC 8252 §7.3), whatever the application type.
   */
  async #register(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const text = (await readBody(req)).toString("utf8");
    let metadata: { redirect_uris?: unknown };
    try {
      metadata = JSON.parse(text);
    } catch {
      metadata = {};
    }
    const uris = Array.isArray(metadata.redirect_uris) ? metadata.redirect_uris : [];
    const refused = uris.find((uri) => typeof uri !== "string" || !isAcceptableRedirectUri(uri));
    if (refused !== undefined) {
      res.writeHead(400, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(
        JSON.stringify({
          error: "invalid_redirect_uri",
          error_description: `redirect URI ${String(refused)} is neither https nor http on a loopback address`,
        }),
      );
      return;
    }
    (req as IncomingMessage & { body?: unknown }).body = metadata;
    this.#handler(req, res);
  }

  /**
   * The token endpoint, for a pre-registered client: its secret is verified against the
   * config's hash here, then replaced by the secret oidc-provider knows it by. Requests of
   * other clients pass as they came.
   */
  async #token(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = await readForm(req);
    const presented = clientCredentialsOf(req, form);
    const client = presented && this.#clients.get(presented.id);
    if (presented && client) {
      if (!(await this.#verifySecret(client, presented.secret))) {
        this.#log.info({ client_id: presented.id }, "client authentication failed");
        res.writeHead(401, {
          "content-type": "application/json",
          "cache-control": "no-store",
          "www-authenticate": 'Basic realm="mcpgw"',
        });
        res.end(
          JSON.stringify({
            error: "invalid_client",
            error_description: "client authentication failed",
          }),
        );
        return;
      }
      form.delete("client_id");
      form.delete("client_secret");
      const basic = `${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.internalSecret)}`;
      req.headers.authorization = `Basic ${Buffer.from(basic).toString("base64")}`;
    }
    (req as IncomingMessage & { body?: unknown }).body = Object.fromEntries(form);
    this.#handler(req, res);
  }

  async #verifySecret(client: StaticClient, secret: string): Promise<boolean> {
    const digest = createHash("sha256").update(`${client.client_id}\0${secret}`).digest("base64");
    if (this.#verifiedSecrets.get(digest) === client.client_secret_hash) return true;
    const ok = await verify(client.client_secret_hash, secret).catch(() => false);
    if (ok) {
      if (this.#verifiedSecrets.size >= 1_000) this.#verifiedSecrets.clear();
      this.#verifiedSecrets.set(digest, client.client_secret_hash);
    }
    return ok;
  }

  /**
   * RFC 7009 revocation. oidc-provider answers `unsupported_token_type` for the JWT access
   * tokens it does not store; those the gateway revokes itself (the jti is refused from then
   * on), after checking the token is its own and the caller's. Every other token goes on to
   * oidc-provider, with the form already read.
   */
  async #revoke(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = await readForm(req);
    const token = form.get("token") ?? "";
    if (token.split(".").length === 3) {
      const payload = await jwtVerify(token, this.getKey, { issuer: this.issuer }).then(
        (verified) => verified.payload,
        () => undefined,
      );
      const caller = form.get("client_id");
      if (payload?.jti && payload.exp && (caller === undefined || caller === payload.client_id)) {
        await this.#revokeToken(payload.jti, payload.exp * 1000);
        this.#log.info({ client_id: payload.client_id, sub: payload.sub }, "access token revoked");
      }
      // RFC 7009 §2.2: 200 whether or not the token was valid.
      res.writeHead(200, { "cache-control": "no-store", "content-length": 0 }).end();
      return;
    }
    (req as IncomingMessage & { body?: unknown }).body = Object.fromEntries(form);
    this.#handler(req, res);
  }

  /** The login, then the consent, of one authorization request (`uid`). */
  async #interaction(req: IncomingMessage, res: ServerResponse, uid: string): Promise<void> {
    let details: InteractionDetails;
    try {
      // Checks the interaction cookie: a form posted from another site has none (CSRF).
      details = await this.#provider.interactionDetails(req, res);
    } catch {
      html(res, 400, errorPage("Session expired", "This sign-in page has expired."));
      return;
    }
    if (details.uid !== uid) {
      html(res, 400, errorPage("Session expired", "This sign-in page has expired."));
      return;
    }
    const client = await this.#provider.Client.find(details.params.client_id);
    const clientName = client?.clientName ?? details.params.client_id;
    const action = `${INTERACTION}${uid}`;
    if (details.prompt.name === "login" && this.#oidc) {
      await this.#oidcLogin(req, res, uid, this.#oidc);
      return;
    }
    if (details.prompt.name === "login") {
      if (req.method !== "POST") {
        html(res, 200, loginPage({ action, clientName }));
        return;
      }
      const form = await readForm(req);
      const username = form.get("username") ?? "";
      const refused = this.#throttled(username, req.socket.remoteAddress);
      if (refused) {
        html(res, 429, loginPage({ action, clientName, username, error: refused }));
        return;
      }
      const user = this.#users.get(username);
      const ok = user ? await verify(user.password_hash, form.get("password") ?? "") : false;
      if (!user || !ok) {
        this.#failed(username, req.socket.remoteAddress);
        this.#log.info({ username, remote_addr: req.socket.remoteAddress }, "login failed");
        html(
          res,
          401,
          loginPage({ action, clientName, username, error: "Wrong username or password." }),
        );
        return;
      }
      this.#failures.delete(`${username}\0${req.socket.remoteAddress}`);
      await this.#provider.interactionFinished(req, res, { login: { accountId: username } });
      return;
    }
    // Consent: the scopes asked for that this user may grant, on the resources asked for.
    const username = details.session?.accountId ?? "";
    const user = this.#users.get(username);
    const requested = missingScopes(details);
    const allowed = new Set([BASE_SCOPE, ...(this.#oidc?.scopes ?? user?.scopes ?? [])]);
    const granted = [...new Set(requested.filter((scope) => allowed.has(scope)))];
    const resources = Object.keys(details.prompt.details.missingResourceScopes ?? {});
    if (req.method !== "POST") {
      html(res, 200, consentPage({ action, clientName, username, scopes: granted, resources }));
      return;
    }
    const form = await readForm(req);
    if (form.get("decision") !== "allow") {
      await this.#provider.interactionFinished(req, res, {
        error: "access_denied",
        error_description: "the user denied access",
      });
      return;
    }
    const grant = details.grantId
      ? await this.#provider.Grant.find(details.grantId)
      : new this.#provider.Grant({ accountId: username, clientId: details.params.client_id });
    const oidc = details.prompt.details.missingOIDCScope;
    if (oidc) grant.addOIDCScope(oidc.join(" "));
    for (const [indicator, scopes] of Object.entries(
      details.prompt.details.missingResourceScopes ?? {},
    )) {
      grant.addResourceScope(indicator, scopes.filter((scope) => allowed.has(scope)).join(" "));
    }
    const grantId = await grant.save();
    await this.#provider.interactionFinished(req, res, { consent: { grantId } });
  }

  /**
   * The login step through the OpenID Connect provider: off to it, and back with the ticket
   * the callback made, which names the user.
   */
  async #oidcLogin(req: IncomingMessage, res: ServerResponse, uid: string, oidc: OidcLogin) {
    const ticket = new URL(req.url ?? "/", "http://interaction").searchParams.get("ticket");
    if (ticket === null) {
      res.writeHead(303, {
        location: await oidc.authorizationUrl(uid),
        "cache-control": "no-store",
      });
      res.end();
      return;
    }
    const accountId = await oidc.take(ticket, uid);
    if (accountId === undefined) {
      html(res, 400, errorPage("Sign-in failed", "This sign-in has expired; start again."));
      return;
    }
    this.#log.info({ username: accountId }, "login through the OpenID Connect provider");
    await this.#provider.interactionFinished(req, res, { login: { accountId } });
  }

  /** The OpenID Connect provider's redirect back: on to the interaction it belongs to. */
  async #oidcCallback(req: IncomingMessage, res: ServerResponse, oidc: OidcLogin): Promise<void> {
    try {
      const query = new URL(req.url ?? "/", "http://callback").searchParams;
      const { uid, ticket } = await oidc.callback(query);
      res.writeHead(303, {
        location: `${INTERACTION}${uid}?ticket=${encodeURIComponent(ticket)}`,
        "cache-control": "no-store",
      });
      res.end();
    } catch (error) {
      const message =
        error instanceof LoginError ? error.message : "The sign-in could not be completed.";
      if (!(error instanceof LoginError)) {
        this.#log.error({ err: error }, "authorization server: OpenID Connect sign-in failed");
      }
      html(res, 400, errorPage("Sign-in failed", message));
    }
  }

  /** Why a login is refused now, or undefined. */
  #throttled(username: string, address: string | undefined): string | undefined {
    const entry = this.#failures.get(`${username}\0${address}`);
    if (!entry || Date.now() - entry.since > LOGIN_WINDOW_MS) return undefined;
    if (entry.count < LOGIN_ATTEMPTS) return undefined;
    return "Too many failed sign-ins. Wait 15 minutes, then try again.";
  }

  #failed(username: string, address: string | undefined): void {
    const key = `${username}\0${address}`;
    const entry = this.#failures.get(key);
    if (!entry || Date.now() - entry.since > LOGIN_WINDOW_MS) {
      if (this.#failures.size > 10_000) this.#failures.clear();
      this.#failures.set(key, { count: 1, since: Date.now() });
    } else {
      entry.count++;
    }
  }
}

function allScopes(config: AuthorizationServerConfig): string[] {
  return [
    ...new Set([
      BASE_SCOPE,
      ...(config.login.type === "oidc" ? config.login.scopes : []),
      ...config.scopes,
      ...config.users.flatMap((user) => user.scopes),
      ...config.clients.flatMap((client) => client.scopes),
    ]),
  ];
}

/** An authorization request that names no scope asks for the base scope. */
function withDefaultScope(req: IncomingMessage): void {
  const url = new URL(req.url ?? "/", "http://authorize");
  if ((url.searchParams.get("scope") ?? "").trim() !== "") return;
  url.searchParams.set("scope", BASE_SCOPE);
  req.url = `${url.pathname}${url.search}`;
}

function missingScopes(details: InteractionDetails): string[] {
  return Object.values(details.prompt.details.missingResourceScopes ?? {}).flat();
}

/** RFC 6749 §2.3.1: the client's id and secret, from HTTP Basic or the form. */
function clientCredentialsOf(
  req: IncomingMessage,
  form: URLSearchParams,
): { id: string; secret: string } | undefined {
  const header = req.headers.authorization;
  if (header?.startsWith("Basic ")) {
    const decoded = Buffer.from(header.slice(6), "base64").toString("utf8");
    const at = decoded.indexOf(":");
    if (at === -1) return undefined;
    try {
      return {
        id: decodeURIComponent(decoded.slice(0, at)),
        secret: decodeURIComponent(decoded.slice(at + 1)),
      };
    } catch {
      return undefined;
    }
  }
  const id = form.get("client_id");
  const secret = form.get("client_secret");
  return id !== null && secret !== null ? { id, secret } : undefined;
}

function html(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    // No form-action: browsers apply it to the redirects after a form post too, and the
    // consent form's answer is a redirect to the client, on another origin.
    "content-security-policy":
      "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
  });
  res.end(body);
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  return new URLSearchParams((await readBody(req)).toString("utf8"));
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_FORM_BYTES) throw new Error("request body too large");
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** https://..., or http:// on 127.0.0.0/8, [::1] or localhost (any port, RFC 8252 §7.3). */
export function isAcceptableRedirectUri(uri: string): boolean {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return false;
  }
  if (url.hash !== "") return false;
  if (url.protocol === "https:") return true;
  if (url.protocol !== "http:") return false;
  const host = url.hostname;
  return host === "localhost" || host === "[::1]" || /^127(\.\d{1,3}){3}$/.test(host);
}

interface IssuedToken {
  jti: string;
  grantId?: string;
  exp?: number;
}

interface InteractionDetails {
  uid: string;
  grantId?: string;
  session?: { accountId?: string };
  params: { client_id: string };
  prompt: {
    name: "login" | "consent";
    details: {
      missingOIDCScope?: string[];
      missingResourceScopes?: Record<string, string[]>;
    };
  };
}

interface Grant {
  addOIDCScope(scope: string): void;
  addResourceScope(resource: string, scope: string): void;
  save(): Promise<string>;
}

/** The part of oidc-provider's API used here; the package ships no type declarations. */
interface OidcProvider {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  on(event: string, listener: (...args: never[]) => void): void;
  use(middleware: (ctx: unknown, next: () => Promise<void>) => Promise<void>): void;
  interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
  interactionFinished(
    req: IncomingMessage,
    res: ServerResponse,
    result: Record<string, unknown>,
  ): Promise<void>;
  Client: { find(id: string): Promise<{ clientName?: string } | undefined> };
  Grant: {
    new (options: { accountId: string; clientId: string }): Grant;
    find(id: string): Promise<Grant>;
  };
}

interface OidcProviderModule {
  default: new (issuer: string, configuration: object) => OidcProvider;
  errors: { InvalidTarget: new (description?: string) => Error };
}

export type { JWK };
