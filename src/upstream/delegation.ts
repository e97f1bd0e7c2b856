/**
 * Per-user delegation (`upstream.auth` type `authorization_code`): each caller connects an
 * account of the upstream's provider once, and the gateway sends that caller's token upstream.
 *
 * 1. A caller without a token gets JSON-RPC error -32042 (MCP 2025-11-25 URL elicitation) whose
 *    URL is `/oauth/connect/<route>?ticket=...`: the ticket is sealed (secrets.encryption_key),
 *    names the route and the caller, and expires in 10 minutes, so the link works in a browser
 *    without the caller's credentials and only for that caller.
 * 2. `/oauth/connect/...` sends the browser to the provider's authorization endpoint with PKCE
 *    (S256) and a one-time `state`; the provider sends it back to `/oauth/callback`, where the
 *    code is exchanged and the tokens are stored, sealed, for (route, caller).
 * 3. The caller's requests then carry the token; it is refreshed ahead of expiry with its
 *    refresh token (one refresh at a time per caller, a rotated refresh token kept).
 */
import { createHash, randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { setTimeout as delay } from "node:timers/promises";
import type { Logger } from "pino";
import type { Principal } from "../auth/principal.js";
import { GatewayError } from "../errors.js";
import type { Outbound } from "../lib/outbound.js";
import type { Component } from "../runtime/usage-pool.js";
import { type SecretBox, SecretError } from "../secrets/cipher.js";
import {
  requestToken,
  type UpstreamAuthConfig,
  UpstreamAuthError,
  type UpstreamCredentials,
} from "./credentials.js";
import type { DelegatedTokens, TokenSet } from "./token-store.js";

type AuthorizationCodeConfig = Extract<UpstreamAuthConfig, { type: "authorization_code" }>;

export const CONNECT_PREFIX = "/oauth/connect";
export const CALLBACK_PATH = "/oauth/callback";

const TICKET_TTL_MS = 10 * 60_000;
const PENDING_TTL_MS = 10 * 60_000;
/** While another replica refreshes a caller's token: how often, and how many times, to look. */
const LOCK_WAIT_MS = 100;
const LOCK_WAITS = 100;

/** Who a caller is, for the store: the same person on every request and every replica. */
export function subjectOf(principal: Principal | undefined): string | undefined {
  if (principal?.keyId !== undefined) return `key:${principal.keyId}`;
  if (principal?.sub !== undefined) return `sub:${principal.sub}`;
  return undefined;
}

/**
 * The routes' connect flows and the token store: a component kept across reloads (pending
 * connects survive a SIGHUP); each generation tells it the routes it serves.
 */
export class Delegation implements Component {
  readonly #box: SecretBox;
  readonly #store: DelegatedTokens;
  readonly #log: Logger;
  #routes = new Map<string, AuthorizationCodeConfig>();
  #publicOrigin = "";
  #outbound: Outbound | undefined;

  constructor(box: SecretBox, store: DelegatedTokens, log: Logger) {
    this.#box = box;
    this.#store = store;
    this.#log = log;
  }

  /**
   * The routes with per-user delegation, the origin clients reach the gateway at, and the guard
   * token requests go through.
   */
  use(
    routes: Map<string, AuthorizationCodeConfig>,
    publicOrigin: string,
    outbound: Outbound,
  ): void {
    this.#routes = routes;
    this.#publicOrigin = publicOrigin;
    this.#outbound = outbound;
  }

  /** One token request at a route's token endpoint. */
  requestToken(config: AuthorizationCodeConfig, params: Record<string, string>) {
    if (this.#outbound === undefined) throw new Error("delegation: no generation uses it yet");
    return requestToken(this.#outbound, config, params);
  }

  handles(path: string): boolean {
    return path === CALLBACK_PATH || path.startsWith(`${CONNECT_PREFIX}/`);
  }

  handle(req: IncomingMessage, res: ServerResponse, path: string): void {
    const url = new URL(req.url ?? "/", "http://gateway");
    const done = path === CALLBACK_PATH ? this.#callback(url, res) : this.#connect(path, url, res);
    done.catch((error: unknown) => {
      this.#log.warn({ err: (error as Error).message }, "upstream auth: connect failed");
      page(
        res,
        502,
        "The account could not be connected",
        "The provider's token endpoint did not give a token. Try again, or ask the gateway's operator.",
      );
    });
  }

  /** The URL a caller without a token is sent to (in the -32042 error). */
  connectUrl(route: string, subject: string): string {
    const ticket = this.#box.seal(
      JSON.stringify({ r: route, s: subject, e: Date.now() + TICKET_TTL_MS }),
    );
    return `${this.#publicOrigin}${CONNECT_PREFIX}${route}?ticket=${encodeURIComponent(ticket)}`;
  }

  credentials(route: string, config: AuthorizationCodeConfig): UpstreamCredentials {
    return new DelegatedCredentials(route, config, this);
  }

  get store(): DelegatedTokens {
    return this.#store;
  }

  close(): void {
    this.#store.close();
  }

  async #connect(path: string, url: URL, res: ServerResponse): Promise<void> {
    const route = path.slice(CONNECT_PREFIX.length);
    const config = this.#routes.get(route);
    let ticket: { r: string; s: string; e: number } | undefined;
    try {
      ticket = JSON.parse(this.#box.openText(url.searchParams.get("ticket") ?? ""));
    } catch {
      ticket = undefined;
    }
    if (
      config === undefined ||
      ticket === undefined ||
      ticket.r !== route ||
      ticket.e < Date.now()
    ) {
      page(
        res,
        400,
        "This link does not work",
        "It has expired or was not made for this gateway. Call the tool again for a new one.",
      );
      return;
    }
    const state = randomBytes(24).toString("base64url");
    const verifier = randomBytes(32).toString("base64url");
    await this.#store.addPending(state, { route, subject: ticket.s, verifier }, PENDING_TTL_MS);
    const target = new URL(config.authorization_url);
    target.searchParams.set("response_type", "code");
    target.searchParams.set("client_id", config.client_id);
    target.searchParams.set("redirect_uri", this.#redirectUri(config));
    if (config.scopes.length > 0) target.searchParams.set("scope", config.scopes.join(" "));
    if (config.resource !== undefined) target.searchParams.set("resource", config.resource);
    target.searchParams.set("state", state);
    target.searchParams.set(
      "code_challenge",
      createHash("sha256").update(verifier).digest("base64url"),
    );
    target.searchParams.set("code_challenge_method", "S256");
    res.writeHead(302, { location: target.href, "cache-control": "no-store" });
    res.end();
  }

  async #callback(url: URL, res: ServerResponse): Promise<void> {
    const pending = await this.#store.takePending(url.searchParams.get("state") ?? "");
    if (pending === undefined) {
      page(
        res,
        400,
        "This link does not work",
        "The sign-in took too long or was already used. Call the tool again for a new link.",
      );
      return;
    }
    const config = this.#routes.get(pending.route);
    const error = url.searchParams.get("error");
    if (config === undefined || error !== null) {
      page(
        res,
        400,
        "The account was not connected",
        error === "access_denied"
          ? "Access was denied at the provider."
          : "The provider did not grant access.",
      );
      return;
    }
    const token = await this.requestToken(config, {
      grant_type: "authorization_code",
      code: url.searchParams.get("code") ?? "",
      redirect_uri: this.#redirectUri(config),
      code_verifier: pending.verifier,
    });
    await this.#store.put(pending.route, pending.subject, token);
    this.#log.info({ route: pending.route }, "upstream auth: an account was connected");
    page(res, 200, "Account connected", "You can close this window and call the tool again.");
  }

  #redirectUri(config: AuthorizationCodeConfig): string {
    return config.redirect_uri ?? `${this.#publicOrigin}${CALLBACK_PATH}`;
  }
}

/** A route's per-user credentials: the caller's stored token, refreshed when due. */
class DelegatedCredentials implements UpstreamCredentials {
  readonly #route: string;
  readonly #config: AuthorizationCodeConfig;
  readonly #delegation: Delegation;
  readonly #refreshing = new Map<string, Promise<TokenSet | undefined>>();

  constructor(route: string, config: AuthorizationCodeConfig, delegation: Delegation) {
    this.#route = route;
    this.#config = config;
    this.#delegation = delegation;
  }

  headers(
    principal?: Principal,
  ): Readonly<Record<string, string>> | Promise<Readonly<Record<string, string>>> {
    const subject = subjectOf(principal);
    if (subject === undefined) throw this.#connectError(undefined);
    const token = this.#delegation.store.get(this.#route, subject);
    if (!(token instanceof Promise)) return this.#use(subject, token);
    return token.then((found) => this.#use(subject, found)).catch(storeFailure);
  }

  rejected(_sent: Readonly<Record<string, string>>, principal?: Principal): void {
    const subject = subjectOf(principal);
    if (subject === undefined) return;
    const { store } = this.#delegation;
    // Due at once: the next request refreshes it, or asks the caller to connect again.
    void Promise.resolve(store.get(this.#route, subject))
      .then((token) => token && store.put(this.#route, subject, { ...token, refreshAt: 0 }))
      .catch(() => {});
  }

  close(): void {}

  #use(
    subject: string,
    token: TokenSet | undefined,
  ): Readonly<Record<string, string>> | Promise<Readonly<Record<string, string>>> {
    if (token === undefined) throw this.#connectError(subject);
    const now = Date.now();
    if (token.refreshAt === undefined || now < token.refreshAt) return bearer(token.accessToken);
    if (token.expiresAt !== undefined && now < token.expiresAt) {
      // Due, still valid: used while one refresh runs (a failed one is tried again next time).
      this.#refresh(subject, token).catch(() => {});
      return bearer(token.accessToken);
    }
    return this.#refresh(subject, token).then((fresh) => {
      if (fresh === undefined) throw this.#connectError(subject);
      return bearer(fresh.accessToken);
    });
  }

  /** One refresh per caller at a time; undefined when the caller must connect again. */
  #refresh(subject: string, token: TokenSet): Promise<TokenSet | undefined> {
    let running = this.#refreshing.get(subject);
    if (running === undefined) {
      running = this.#refreshShared(subject, token).finally(() => this.#refreshing.delete(subject));
      this.#refreshing.set(subject, running);
    }
    return running;
  }

  /**
   * Another replica may have refreshed already (a rotated refresh token must not be used
   * twice): the shared store's latest tokens first, then a refresh under the caller's lock, or
   * the other replica's result when it holds the lock.
   */
  async #refreshShared(subject: string, token: TokenSet): Promise<TokenSet | undefined> {
    const { store } = this.#delegation;
    for (let attempt = 0; attempt < LOCK_WAITS; attempt++) {
      const latest = await store.latest(this.#route, subject);
      if (latest === undefined) return undefined;
      if (latest.accessToken !== token.accessToken) return latest;
      const done = await store.whileLocked(this.#route, subject, async () => {
        // Read again under the lock: another replica may have refreshed between the read
        // above and taking the lock, and its refresh token has rotated ours away.
        const current = await store.latest(this.#route, subject);
        if (current === undefined || current.accessToken !== token.accessToken) {
          return { fresh: current };
        }
        return { fresh: await this.#refreshOnce(subject, current) };
      });
      if (done !== undefined) return done.fresh;
      await delay(LOCK_WAIT_MS);
    }
    throw new UpstreamAuthError(
      "timeout",
      "another replica's refresh of this caller's token did not finish",
    );
  }

  async #refreshOnce(subject: string, token: TokenSet): Promise<TokenSet | undefined> {
    const { store } = this.#delegation;
    if (token.refreshToken === undefined) {
      await store.put(this.#route, subject, undefined);
      return undefined;
    }
    try {
      const fresh = await this.#delegation.requestToken(this.#config, {
        grant_type: "refresh_token",
        refresh_token: token.refreshToken,
      });
      // A provider that does not rotate refresh tokens sends none: the old one stays good.
      const kept = { ...fresh, refreshToken: fresh.refreshToken ?? token.refreshToken };
      await store.put(this.#route, subject, kept);
      return kept;
    } catch (error) {
      if (error instanceof UpstreamAuthError && error.reason === "refused") {
        // invalid_grant: revoked or expired at the provider. The caller connects again.
        await store.put(this.#route, subject, undefined);
        return undefined;
      }
      throw error;
    }
  }

  #connectError(subject: string | undefined): GatewayError {
    if (subject === undefined) {
      return new UpstreamAuthError(
        "refused",
        "this route's upstream needs a caller with an identity (an API key or a token with sub)",
      );
    }
    const url = this.#delegation.connectUrl(this.#route, subject);
    const message = "Connect your account for this server, then try again.";
    return new GatewayError("upstream_authorization_required", message, {
      data: {
        elicitations: [
          { mode: "url", elicitationId: randomBytes(12).toString("base64url"), url, message },
        ],
      },
    });
  }
}

/**
 * A failure of the shared store is the gateway's, not the provider's: Redis away, or a token
 * sealed under a key this gateway does not have (a replica with another encryption_key).
 */
function storeFailure(error: unknown): never {
  if (error instanceof GatewayError) throw error;
  if (error instanceof SecretError) {
    throw new UpstreamAuthError(
      "token_unreadable",
      "the caller's stored upstream token does not open with this gateway's secrets.encryption_key or previous_encryption_keys",
      error,
    );
  }
  throw new UpstreamAuthError("store_unavailable", "the shared store cannot be reached", error);
}

function bearer(token: string): Readonly<Record<string, string>> {
  return { authorization: `Bearer ${token}` };
}

function page(res: ServerResponse, status: number, title: string, text: string): void {
  const html = (value: string) => value.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
    "x-frame-options": "DENY",
  });
  res.end(
    `<!doctype html><html><head><meta charset="utf-8"><title>${html(title)}</title></head><body style="font-family:system-ui;max-width:32rem;margin:4rem auto"><h1>${html(title)}</h1><p>${html(text)}</p></body></html>`,
  );
}
