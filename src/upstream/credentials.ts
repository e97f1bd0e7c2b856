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
import { readFile } from "node:fs/promises";
import { setTimeout as delay } from "node:timers/promises";
import type { Logger } from "pino";
import type { Config } from "../config/schema.js";
import { GatewayError } from "../errors.js";
import type { Step } from "../pipeline/exchange.js";
import type { Component } from "../runtime/usage-pool.js";

export type UpstreamAuthConfig = NonNullable<NonNullable<Config["upstream"]>["auth"]>;
type ClientCredentialsConfig = Extract<UpstreamAuthConfig, { type: "client_credentials" }>;

/** Why no credentials could be had; the audit line's `upstream_auth`. */
export type UpstreamAuthFailure =
  | "refused"
  | "server_error"
  | "timeout"
  | "unreachable"
  | "invalid_response"
  /** The upstream answered 401 to the credentials sent. */
  | "rejected";

export class UpstreamAuthError extends GatewayError {
  readonly reason: UpstreamAuthFailure;

  constructor(reason: UpstreamAuthFailure, message: string, cause?: unknown) {
    super("upstream_auth_failed", message, { cause, data: { upstream_auth: reason } });
    this.reason = reason;
  }
}

export interface UpstreamCredentials extends Component {
  /** The headers to send: at once while a token is at hand, a promise while one is fetched. */
  headers(): Readonly<Record<string, string>> | Promise<Readonly<Record<string, string>>>;
  /** The upstream answered 401 to these credentials: a cached token is forgotten. */
  rejected(sent: Readonly<Record<string, string>>): void;
}

/** Pipeline step: the route's credentials on the exchange, for `forward` to send. */
export function upstreamCredentials(credentials: UpstreamCredentials): Step {
  return (exchange) => {
    const set = (headers: Readonly<Record<string, string>>) => {
      exchange.upstreamAuth = { headers, rejected: () => credentials.rejected(headers) };
      exchange.record.upstream_auth = "ok";
    };
    let headers: ReturnType<UpstreamCredentials["headers"]>;
    try {
      headers = credentials.headers();
    } catch (error) {
      return failed(exchange, error);
    }
    if (!(headers instanceof Promise)) return set(headers);
    return headers.then(set, (error: unknown) => failed(exchange, error));
  };
}

function failed(exchange: Parameters<Step>[0], error: unknown): never {
  if (error instanceof UpstreamAuthError) exchange.record.upstream_auth = error.reason;
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

interface CachedToken {
  headers: Readonly<Record<string, string>>;
  /** performance.now() values. */
  refreshAt: number;
  expiresAt: number;
}

/** OAuth 2.0 client credentials grant (RFC 6749 §4.4), with RFC 8707 `resource`. */
export class ClientCredentials implements UpstreamCredentials {
  readonly #config: ClientCredentialsConfig;
  readonly #log: Logger;
  readonly #onFetch: ((result: "ok" | UpstreamAuthFailure) => void) | undefined;
  #token: CachedToken | undefined;
  #inflight: Promise<CachedToken> | undefined;
  readonly #closing = new AbortController();

  constructor(
    config: ClientCredentialsConfig,
    log: Logger,
    onFetch?: (result: "ok" | UpstreamAuthFailure) => void,
  ) {
    this.#config = config;
    this.#log = log;
    this.#onFetch = onFetch;
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
        const retriable = failure.reason !== "refused" && failure.reason !== "invalid_response";
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
    const form = new URLSearchParams({ grant_type: "client_credentials" });
    if (config.scopes.length > 0) form.set("scope", config.scopes.join(" "));
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
    const startedAt = performance.now();
    let response: Response;
    try {
      response = await fetch(config.token_url, {
        method: "POST",
        headers,
        body: form,
        redirect: "error",
        signal: AbortSignal.any([AbortSignal.timeout(config.timeout), this.#closing.signal]),
      });
    } catch (error) {
      const timedOut = (error as Error).name === "TimeoutError";
      throw new UpstreamAuthError(
        timedOut ? "timeout" : "unreachable",
        timedOut
          ? `the token endpoint did not answer within ${config.timeout} ms`
          : "the token endpoint cannot be reached",
        error,
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
    const lifetime =
      Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn * 1000 : DEFAULT_LIFETIME_MS;
    const margin = Math.min(MAX_MARGIN_MS, Math.max(MIN_MARGIN_MS, lifetime / 10));
    return {
      headers: headerOf("authorization", accessToken),
      refreshAt: startedAt + Math.max(0, lifetime - margin),
      expiresAt: startedAt + lifetime,
    };
  }
}

function formEncode(text: string): string {
  return new URLSearchParams({ "": text }).toString().slice(1);
}

/** The credentials of an upstream's `auth` settings. */
export async function buildCredentials(
  config: UpstreamAuthConfig,
  log: Logger,
  onFetch?: (result: "ok" | UpstreamAuthFailure) => void,
): Promise<UpstreamCredentials> {
  if (config.type === "bearer") return StaticBearer.create(config);
  return new ClientCredentials(config, log, onFetch);
}
