/**
 * The gateway's own credentials towards an upstream (`upstream.auth`): the client's token is
 * never forwarded (the MCP spec forbids passing it through), so an upstream that wants one gets
 * the gateway's. A pipeline step before `forward` puts the header on the exchange; a route
 * without `upstream.auth` has no such step and pays nothing.
 *
 * - `bearer`: a static token (from the config, an env var, an enc:v1 value or a file).
 * - `client_credentials`: an OAuth access token from the route's token endpoint, cached until
 *   shortly before it expires and refreshed by one request however many callers wait (single
 *   flight); a token that is due for refresh but still valid is used while the refresh runs.
 *
 * Each is a usage-pool component: a reload that leaves the settings as they were keeps the
 * cached token.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { setTimeout as delay } from "node:timers/promises";
import type { Logger } from "pino";
import type { Principal } from "../auth/principal.js";
import type { Config } from "../config/schema.js";
import { GatewayError } from "../errors.js";
import { type Outbound, OutboundError } from "../lib/outbound.js";
import type { Step } from "../pipeline/exchange.js";
import type { Component } from "../runtime/usage-pool.js";
import type { TokenSet } from "./token-store.js";

export type UpstreamAuthConfig = NonNullable<NonNullable<Config["upstream"]>["auth"]>;
type ClientCredentialsConfig = Extract<
  UpstreamAuthConfig,
  { type: "client_credentials" | "token_exchange" }
>;
/** What a token request needs of any grant's settings. */
type TokenEndpointConfig = Pick<
  ClientCredentialsConfig,
  "token_url" | "client_id" | "client_secret" | "resource" | "auth_method" | "timeout"
> & { audience?: string | undefined };

/** Why no credentials could be had; the audit line's `upstream_auth`. */
export type UpstreamAuthFailure =
  | "refused"
  | "server_error"
  | "timeout"
  | "unreachable"
  | "invalid_response"
  /**
   * The gateway would not fetch the token endpoint: its address is loopback, private or
   * link-local and `outbound` does not allow it, or it redirected.
   */
  | "outbound_refused"
  /** The upstream answered 401 to the credentials sent. */
  | "rejected"
  /** authorization_code: the caller has not connected an account yet. */
  | "connect_required"
  /** token_exchange: the caller has no OAuth access token to exchange (an API key). */
  | "no_subject_token"
  /** authorization_code on Redis: the shared store cannot be reached. */
  | "store_unavailable"
  /**
   * authorization_code: the caller's stored token was sealed under a key that is neither
   * `secrets.encryption_key` nor one of `previous_encryption_keys`.
   */
  | "token_unreadable";

export class UpstreamAuthError extends GatewayError {
  readonly reason: UpstreamAuthFailure;

  constructor(reason: UpstreamAuthFailure, message: string, cause?: unknown) {
    super("upstream_auth_failed", message, { cause, data: { upstream_auth: reason } });
    this.reason = reason;
  }
}

export interface UpstreamCredentials extends Component {
  /**
   * The headers to send for `principal` (per-user credentials depend on it): at once while a
   * token is at hand, a promise while one is fetched.
   */
  headers(
    principal?: Principal,
    callerToken?: string,
  ): Readonly<Record<string, string>> | Promise<Readonly<Record<string, string>>>;
  /** The upstream answered 401 to these credentials: a cached token is forgotten. */
  rejected(
    sent: Readonly<Record<string, string>>,
    principal?: Principal,
    callerToken?: string,
  ): void;
}

/** Pipeline step: the route's credentials on the exchange, for `forward` to send. */
export function upstreamCredentials(credentials: UpstreamCredentials): Step {
  return (exchange) => {
    const { principal } = exchange;
    // token_exchange exchanges the caller's own verified access token (never sent upstream).
    const callerToken =
      principal?.type === "oauth" ? bearerOf(exchange.req.headers.authorization) : undefined;
    const set = (headers: Readonly<Record<string, string>>) => {
      exchange.upstreamAuth = {
        headers,
        rejected: () => credentials.rejected(headers, principal, callerToken),
      };
      exchange.record.upstream_auth = "ok";
    };
    let headers: ReturnType<UpstreamCredentials["headers"]>;
    try {
      headers = credentials.headers(principal, callerToken);
    } catch (error) {
      return failed(exchange, error);
    }
    if (!(headers instanceof Promise)) return set(headers);
    return headers.then(set, (error: unknown) => failed(exchange, error));
  };
}

function bearerOf(header: string | undefined): string | undefined {
  return header !== undefined && /^bearer /i.test(header) ? header.slice(7).trim() : undefined;
}

function failed(exchange: Parameters<Step>[0], error: unknown): never {
  if (error instanceof UpstreamAuthError) exchange.record.upstream_auth = error.reason;
  if (error instanceof GatewayError && error.code === "upstream_authorization_required") {
    exchange.record.upstream_auth = "connect_required";
    // Only a JSON-RPC request can carry the connect URL back (a GET stream, a notification cannot).
    if (exchange.peek?.id === undefined || exchange.peek.id === null) {
      throw new UpstreamAuthError(
        "connect_required",
        "the caller has not connected an account for this route's upstream",
      );
    }
  }
  throw error;
}

function headerOf(name: string, token: string): Readonly<Record<string, string>> {
  const header = name.toLowerCase();
  return Object.freeze({ [header]: header === "authorization" ? `Bearer ${token}` : token });
}

export class StaticBearer implements UpstreamCredentials {
  readonly #headers: Readonly<Record<string, string>>;

  private constructor(headers: Readonly<Record<string, string>>) {
    this.#headers = headers;
  }

  /** Reads `token_file` now (start, reload); a missing or empty file fails the build. */
  static async create(
    config: Extract<UpstreamAuthConfig, { type: "bearer" }>,
  ): Promise<StaticBearer> {
    let token = config.token;
    if (token === undefined) {
      const file = config.token_file as string;
      token = (await readFile(file, "utf8")).trim();
      if (token === "") throw new Error(`upstream.auth.token_file ${file} is empty`);
    }
    return new StaticBearer(headerOf(config.header, token));
  }

  headers(): Readonly<Record<string, string>> {
    return this.#headers;
  }

  rejected(): void {}

  close(): void {}
}

/** A token's lifetime when the token endpoint does not say (RFC 6749 §5.1: RECOMMENDED). */
const DEFAULT_LIFETIME_MS = 300_000;
/** Refresh ahead of expiry by a tenth of the lifetime, at least 5 s and at most a minute. */
const MIN_MARGIN_MS = 5_000;
const MAX_MARGIN_MS = 60_000;
const FIRST_BACKOFF_MS = 200;
/** Largest token endpoint answer read (a token response with a large JWT is a few KiB). */
const MAX_TOKEN_RESPONSE_BYTES = 256 * 1024;

interface CachedToken {
  headers: Readonly<Record<string, string>>;
  /** performance.now() values. */
  refreshAt: number;
  expiresAt: number;
}

/**
 * A token got with one grant's parameters and kept until shortly before it expires: the OAuth
 * 2.0 client credentials grant (RFC 6749 §4.4) by default, with RFC 8707 `resource`.
 */
export class ClientCredentials implements UpstreamCredentials {
  readonly #config: ClientCredentialsConfig;
  readonly #log: Logger;
  readonly #outbound: Outbound;
  readonly #onFetch: ((result: "ok" | UpstreamAuthFailure) => void) | undefined;
  readonly #params: Readonly<Record<string, string>>;
  #token: CachedToken | undefined;
  #inflight: Promise<CachedToken> | undefined;
  readonly #closing = new AbortController();

  constructor(
    config: ClientCredentialsConfig,
    log: Logger,
    outbound: Outbound,
    onFetch?: (result: "ok" | UpstreamAuthFailure) => void,
    params: Readonly<Record<string, string>> = { grant_type: "client_credentials" },
  ) {
    this.#config = config;
    this.#log = log;
    this.#outbound = outbound;
    this.#onFetch = onFetch;
    this.#params = params;
  }

  headers(): Readonly<Record<string, string>> | Promise<Readonly<Record<string, string>>> {
    const token = this.#token;
    const now = performance.now();
    if (token && now < token.refreshAt) return token.headers;
    if (token && now < token.expiresAt) {
      // Due for refresh, still valid: used while one refresh runs (its failure is logged).
      this.#refresh().catch(() => {});
      return token.headers;
    }
    return this.#refresh().then((fresh) => fresh.headers);
  }

  rejected(sent: Readonly<Record<string, string>>): void {
    if (this.#token?.headers === sent) this.#token = undefined;
  }

  close(): void {
    this.#closing.abort();
  }

  #refresh(): Promise<CachedToken> {
    if (this.#inflight === undefined) {
      this.#inflight = this.#fetchWithRetries().finally(() => {
        this.#inflight = undefined;
      });
    }
    return this.#inflight;
  }

  async #fetchWithRetries(): Promise<CachedToken> {
    const { max_retries: retries, token_url: url } = this.#config;
    for (let attempt = 0; ; attempt++) {
      try {
        const token = await this.#fetch();
        this.#token = token;
        this.#onFetch?.("ok");
        return token;
      } catch (error) {
        const failure = error as UpstreamAuthError;
        const retriable =
          failure.reason !== "refused" &&
          failure.reason !== "invalid_response" &&
          failure.reason !== "outbound_refused";
        if (!retriable || attempt >= retries || this.#closing.signal.aborted) {
          this.#onFetch?.(failure.reason);
          this.#log.warn(
            { token_url: url, reason: failure.reason, attempts: attempt + 1, err: failure.message },
            "upstream auth: no token from the token endpoint",
          );
          throw failure;
        }
        const backoff = FIRST_BACKOFF_MS * 2 ** attempt * (0.75 + Math.random() / 2);
        await delay(backoff, undefined, { signal: this.#closing.signal }).catch(() => {});
      }
    }
  }

  async #fetch(): Promise<CachedToken> {
    const config = this.#config;
    const params: Record<string, string> = { ...this.#params };
    if (config.scopes.length > 0) params.scope = config.scopes.join(" ");
    const startedAt = performance.now();
    const { accessToken, lifetimeMs } = await fetchToken(
      this.#outbound,
      config,
      params,
      this.#closing.signal,
    );
    const lifetime = lifetimeMs ?? DEFAULT_LIFETIME_MS;
    return {
      headers: headerOf("authorization", accessToken),
      refreshAt: startedAt + Math.max(0, lifetime - refreshMargin(lifetime)),
      expiresAt: startedAt + lifetime,
    };
  }
}

/**
 * One token request (RFC 6749 §3.2) with `params` (the grant's), the client authenticated as
 * configured, and `resource` / `audience` when set. Fails with an UpstreamAuthError that says
 * why; never with the secret or a token in its message.
 */
async function fetchToken(
  outbound: Outbound,
  config: TokenEndpointConfig,
  params: Record<string, string>,
  signal?: AbortSignal,
): Promise<{
  accessToken: string;
  refreshToken: string | undefined;
  lifetimeMs: number | undefined;
}> {
  const form = new URLSearchParams(params);
  if (config.resource !== undefined) form.set("resource", config.resource);
  if (config.audience !== undefined) form.set("audience", config.audience);
  const headers: Record<string, string> = {
    "content-type": "application/x-www-form-urlencoded",
    accept: "application/json",
  };
  if (config.auth_method === "client_secret_basic") {
    // RFC 6749 §2.3.1: each part form-urlencoded before the base64.
    const user = `${formEncode(config.client_id)}:${formEncode(config.client_secret)}`;
    headers.authorization = `Basic ${Buffer.from(user).toString("base64")}`;
  } else {
    form.set("client_id", config.client_id);
    form.set("client_secret", config.client_secret);
  }
  let response: Response;
  try {
    response = await outbound.fetch(config.token_url, {
      method: "POST",
      headers,
      body: form,
      timeoutMs: config.timeout,
      maxBytes: MAX_TOKEN_RESPONSE_BYTES,
      ...(signal && { signal }),
    });
  } catch (error) {
    const reason = error instanceof OutboundError ? error.reason : "unreachable";
    if (reason === "timeout") {
      throw new UpstreamAuthError(
        "timeout",
        `the token endpoint did not answer within ${config.timeout} ms`,
        error,
      );
    }
    if (reason === "unreachable") {
      throw new UpstreamAuthError("unreachable", "the token endpoint cannot be reached", error);
    }
    throw new UpstreamAuthError(
      reason === "too_large" ? "invalid_response" : "outbound_refused",
      (error as Error).message,
    );
  }
  let body: Record<string, unknown> | undefined;
  try {
    body = (await response.json()) as Record<string, unknown>;
  } catch {
    body = undefined;
  }
  if (!response.ok) {
    const code = typeof body?.error === "string" ? ` (${body.error})` : "";
    const reason = response.status >= 500 || response.status === 429 ? "server_error" : "refused";
    throw new UpstreamAuthError(reason, `the token endpoint answered ${response.status}${code}`);
  }
  const accessToken = body?.access_token;
  if (typeof accessToken !== "string" || accessToken === "") {
    throw new UpstreamAuthError(
      "invalid_response",
      "the token endpoint's answer has no access_token",
    );
  }
  const expiresIn = Number(body?.expires_in);
  const refreshToken = typeof body?.refresh_token === "string" ? body.refresh_token : undefined;
  return {
    accessToken,
    refreshToken,
    lifetimeMs: Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn * 1000 : undefined,
  };
}

/** A token request for per-user grants: the answer as a token set to store. */
export async function requestToken(
  outbound: Outbound,
  config: TokenEndpointConfig,
  params: Record<string, string>,
): Promise<TokenSet> {
  const requestedAt = Date.now();
  const { accessToken, refreshToken, lifetimeMs } = await fetchToken(outbound, config, params);
  if (lifetimeMs === undefined) return { accessToken, refreshToken };
  return {
    accessToken,
    refreshToken,
    expiresAt: requestedAt + lifetimeMs,
    refreshAt: requestedAt + Math.max(0, lifetimeMs - refreshMargin(lifetimeMs)),
  };
}

/** How long before expiry a token is refreshed: a tenth of its lifetime, 5 s to a minute. */
function refreshMargin(lifetimeMs: number): number {
  return Math.min(MAX_MARGIN_MS, Math.max(MIN_MARGIN_MS, lifetimeMs / 10));
}

function formEncode(text: string): string {
  return new URLSearchParams({ "": text }).toString().slice(1);
}

/** The credentials of an upstream's `auth` settings. */
export async function buildCredentials(
  config: Exclude<UpstreamAuthConfig, { type: "authorization_code" }>,
  log: Logger,
  outbound: Outbound,
  onFetch?: (result: "ok" | UpstreamAuthFailure) => void,
): Promise<UpstreamCredentials> {
  if (config.type === "bearer") return StaticBearer.create(config);
  if (config.type === "token_exchange") return new TokenExchange(config, log, outbound, onFetch);
  return new ClientCredentials(config, log, outbound, onFetch);
}

const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";
/** Exchanged tokens kept, at most: one per caller token in use. */
const MAX_EXCHANGED = 10_000;

/**
 * RFC 8693 token exchange (on-behalf-of): the caller's verified access token is exchanged at
 * the configured authorization server for a token for the upstream, which then acts for the
 * caller's subject. One exchange per caller token, kept (single flight, refreshed) like a
 * client credentials token; the caller's token goes to that token endpoint only, never
 * upstream.
 */
class TokenExchange implements UpstreamCredentials {
  readonly #config: Extract<ClientCredentialsConfig, { type: "token_exchange" }>;
  readonly #log: Logger;
  readonly #outbound: Outbound;
  readonly #onFetch: ((result: "ok" | UpstreamAuthFailure) => void) | undefined;
  readonly #byToken = new Map<string, ClientCredentials>();

  constructor(
    config: Extract<ClientCredentialsConfig, { type: "token_exchange" }>,
    log: Logger,
    outbound: Outbound,
    onFetch?: (result: "ok" | UpstreamAuthFailure) => void,
  ) {
    this.#config = config;
    this.#log = log;
    this.#outbound = outbound;
    this.#onFetch = onFetch;
  }

  headers(
    principal?: Principal,
    callerToken?: string,
  ): Readonly<Record<string, string>> | Promise<Readonly<Record<string, string>>> {
    return this.#of(principal, callerToken).headers();
  }

  rejected(
    sent: Readonly<Record<string, string>>,
    principal?: Principal,
    callerToken?: string,
  ): void {
    if (principal?.type === "oauth" && callerToken) this.#of(principal, callerToken).rejected(sent);
  }

  close(): void {
    for (const cache of this.#byToken.values()) cache.close();
  }

  #of(principal: Principal | undefined, callerToken: string | undefined): ClientCredentials {
    if (principal?.type !== "oauth" || callerToken === undefined) {
      throw new UpstreamAuthError(
        "no_subject_token",
        "this route exchanges the caller's OAuth access token: an API key caller has none",
      );
    }
    const key = createHash("sha256").update(callerToken).digest("base64url");
    let cache = this.#byToken.get(key);
    if (cache === undefined) {
      cache = new ClientCredentials(this.#config, this.#log, this.#outbound, this.#onFetch, {
        grant_type: TOKEN_EXCHANGE,
        subject_token: callerToken,
        subject_token_type: ACCESS_TOKEN_TYPE,
        requested_token_type: ACCESS_TOKEN_TYPE,
      });
      const evicted =
        this.#byToken.size >= MAX_EXCHANGED ? this.#byToken.keys().next().value : undefined;
      if (evicted !== undefined) {
        this.#byToken.get(evicted)?.close();
        this.#byToken.delete(evicted);
      }
      this.#byToken.set(key, cache);
    }
    return cache;
  }
}
