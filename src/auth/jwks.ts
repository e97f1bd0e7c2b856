/**
 * The authorization server's signing keys (JWKS), fetched at startup and refreshed in the
 * background, so that verifying a token never waits on the network in the steady state. A
 * failed refresh keeps the last good keys, past their TTL too: an IdP outage must not take the
 * gateway down with it. A token signed with a key not yet seen (rotation) triggers one refetch,
 * at most once per cooldown, so a flood of made-up `kid`s cannot hammer the IdP.
 */
import {
  createLocalJWKSet,
  type FlattenedJWSInput,
  type JSONWebKeySet,
  type JWK,
  type JWSHeaderParameters,
  errors as joseErrors,
} from "jose";
import { type Outbound, OutboundError } from "../lib/outbound.js";
import type { Logger } from "../log.js";

/** RFC 7518 §3.1 asymmetric signature algorithms (and RFC 8037 EdDSA). No `none`, no HMAC. */
export const ASYMMETRIC_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519",
];

const MIN_RSA_BITS = 2048;
/** Largest JWK Set read (the large public ones, with certificate chains, are tens of KiB). */
const MAX_JWKS_BYTES = 1024 * 1024;

/** Members of a public JWK; anything else (private parts in particular) is dropped. */
const PUBLIC_MEMBERS: Record<string, readonly string[]> = {
  RSA: ["n", "e"],
  EC: ["crv", "x", "y"],
  OKP: ["crv", "x"],
};

export interface JwksOptions {
  url: string;
  /** Interval of background refreshes. */
  cacheTtlMs: number;
  /** Time allowed for one fetch. */
  fetchTimeoutMs: number;
  /** The guard every fetch goes through (addresses, redirects, size). */
  outbound: Outbound;
  /** Least time between two refetches caused by an unknown `kid`. Default min(30s, cacheTtlMs). */
  cooldownMs?: number;
  log: Logger;
  /** Called after every fetch (metrics). */
  onFetch?: (ok: boolean) => void;
}

export interface JwksStats {
  fetches: number;
  failures: number;
  /** When the keys in use were fetched (ms since epoch). */
  fetchedAt: number;
  keys: number;
}

/** The JWKS could not be fetched or used; `message` says why in an operator's words. */
export class JwksUnavailableError extends Error {
  override readonly name = "JwksUnavailableError";
}

export class JwksCache {
  readonly url: string;
  readonly #options: JwksOptions;
  readonly #cooldownMs: number;
  #resolve: ReturnType<typeof createLocalJWKSet> | undefined;
  #refetch: Promise<boolean> | undefined;
  /** When a `kid` not in the keys last caused a refetch; background refreshes do not count. */
  #lastRefetchAt = 0;
  /** Whether the most recent fetch, background refresh or refetch, failed. */
  #lastFetchFailed = false;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly stats: JwksStats = { fetches: 0, failures: 0, fetchedAt: 0, keys: 0 };

  constructor(options: JwksOptions) {
    this.url = options.url;
    this.#options = options;
    this.#cooldownMs = options.cooldownMs ?? Math.min(30_000, options.cacheTtlMs);
  }

  /** Fetches the keys once and starts the background refresh; throws JwksUnavailableError. */
  async prime(): Promise<void> {
    await this.#fetch();
    this.#schedule();
  }

  /**
   * Stops the background refresh. Generations share a cache through the usage pool
   * (runtime/usage-pool.ts), which closes it when the last of them has closed.
   */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  /** A jose key resolver for `jwtVerify`. */
  readonly getKey = async (header: JWSHeaderParameters, token: FlattenedJWSInput) => {
    const resolve = this.#resolve;
    if (!resolve) throw new JwksUnavailableError("no keys have been fetched");
    try {
      return await resolve(header, token);
    } catch (error) {
      if (!(error instanceof joseErrors.JWKSNoMatchingKey)) throw error;
      // Rotation: the key may be new. One refetch, shared by concurrent callers, per cooldown.
      if (!this.#refetch) {
        if (Date.now() - this.#lastRefetchAt < this.#cooldownMs) {
          // Within the cooldown the last fetch decides: while the IdP cannot be reached the new
          // key may well exist, and a 401 would send the client to log in again for nothing.
          if (this.#lastFetchFailed) {
            throw new JwksUnavailableError("unknown kid, and the last JWKS fetch failed");
          }
          throw error;
        }
        this.#lastRefetchAt = Date.now();
        this.#refetch = this.#fetch()
          .then(
            () => true,
            () => false,
          )
          .finally(() => {
            this.#refetch = undefined;
          });
      }
      if (!(await this.#refetch))
        throw new JwksUnavailableError("unknown kid, and the JWKS could not be refetched");
      return (this.#resolve as ReturnType<typeof createLocalJWKSet>)(header, token);
    }
  };

  #schedule(): void {
    clearTimeout(this.#timer);
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#fetch()
        .catch(() => {})
        .finally(() => this.#schedule());
    }, this.#options.cacheTtlMs);
    this.#timer.unref();
  }

  async #fetch(): Promise<void> {
    const { url, fetchTimeoutMs, outbound, log } = this.#options;
    this.stats.fetches++;
    try {
      const jwks = await fetchJwks(outbound, url, fetchTimeoutMs);
      const { keys, skipped } = usableKeys(jwks);
      for (const reason of skipped) log.warn({ jwks_url: url }, `jwks: key skipped: ${reason}`);
      if (keys.length === 0) throw new JwksUnavailableError("the JWKS has no usable signing key");
      this.#resolve = createLocalJWKSet({ keys });
      this.#lastFetchFailed = false;
      this.stats.fetchedAt = Date.now();
      this.stats.keys = keys.length;
      log.debug({ jwks_url: url, keys: keys.length }, "jwks fetched");
      this.#options.onFetch?.(true);
    } catch (error) {
      this.#lastFetchFailed = true;
      this.stats.failures++;
      this.#options.onFetch?.(false);
      if (this.#resolve) {
        log.warn(
          {
            jwks_url: url,
            err: error,
            keys: this.stats.keys,
            fetched_at: new Date(this.stats.fetchedAt).toISOString(),
          },
          "jwks refresh failed: keeping the last good keys",
        );
      }
      throw error instanceof JwksUnavailableError
        ? error
        : new JwksUnavailableError(describe(error));
    }
  }
}

async function fetchJwks(
  outbound: Outbound,
  url: string,
  timeoutMs: number,
): Promise<JSONWebKeySet> {
  let response: Response;
  try {
    response = await outbound.fetch(url, {
      headers: { accept: "application/jwk-set+json, application/json" },
      timeoutMs,
      maxBytes: MAX_JWKS_BYTES,
      followRedirects: true,
    });
  } catch (error) {
    throw new JwksUnavailableError(
      error instanceof OutboundError ? error.message : `GET ${url}: ${describe(error)}`,
    );
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new JwksUnavailableError(`GET ${url}: HTTP ${response.status}`);
  }
  let body: unknown;
  try {
    body = await response.json();
  } catch (error) {
    throw new JwksUnavailableError(`GET ${url}: the response is not JSON (${describe(error)})`);
  }
  if (typeof body !== "object" || body === null || !Array.isArray((body as JSONWebKeySet).keys)) {
    throw new JwksUnavailableError(`GET ${url}: the response is not a JWK Set (no "keys" array)`);
  }
  return body as JSONWebKeySet;
}

/**
 * The public signing keys of a JWK Set that the gateway will verify with: asymmetric, for
 * signatures, RSA of at least 2048 bits. Private members, if an IdP publishes them by mistake,
 * are dropped rather than imported.
 */
export function usableKeys(jwks: JSONWebKeySet): { keys: JWK[]; skipped: string[] } {
  const keys: JWK[] = [];
  const skipped: string[] = [];
  for (const jwk of jwks.keys) {
    if (typeof jwk !== "object" || jwk === null) continue;
    const label = `kid ${JSON.stringify(jwk.kid ?? null)}`;
    const members = PUBLIC_MEMBERS[jwk.kty ?? ""];
    if (!members) {
      skipped.push(
        `${label}: key type ${JSON.stringify(jwk.kty)} is not an asymmetric signing key`,
      );
      continue;
    }
    if (jwk.use !== undefined && jwk.use !== "sig") continue;
    if (jwk.alg !== undefined && !ASYMMETRIC_ALGORITHMS.includes(jwk.alg)) {
      skipped.push(`${label}: algorithm ${jwk.alg} is not allowed`);
      continue;
    }
    if (jwk.kty === "RSA" && rsaBits(jwk.n) < MIN_RSA_BITS) {
      skipped.push(`${label}: RSA key of ${rsaBits(jwk.n)} bits, under ${MIN_RSA_BITS}`);
      continue;
    }
    const source = jwk as Record<string, unknown>;
    const publicKey: Record<string, unknown> = { kty: jwk.kty };
    for (const name of [...members, "kid", "alg", "use"]) {
      if (source[name] !== undefined) publicKey[name] = source[name];
    }
    keys.push(publicKey as JWK);
  }
  return { keys, skipped };
}

function rsaBits(modulus: string | undefined): number {
  if (typeof modulus !== "string") return 0;
  const bytes = Buffer.from(modulus, "base64url");
  let leadingZeros = 0;
  while (leadingZeros < bytes.length && bytes[leadingZeros] === 0) leadingZeros++;
  const significant = bytes.subarray(leadingZeros);
  if (significant.length === 0) return 0;
  return (significant.length - 1) * 8 + (32 - Math.clz32(significant[0] as number));
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error.cause as Error | undefined)?.message;
    return error.name === "TimeoutError"
      ? "timed out"
      : cause
        ? `${error.message} (${cause})`
        : error.message;
  }
  return String(error);
}
