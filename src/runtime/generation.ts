/**
 * A generation is everything the request path needs, built from one config: authenticators,
 * upstream pool, limits, CORS and proxy trust. It is immutable; a reload builds a complete new
 * one and swaps a single reference. Requests retain the generation they started on, so an old
 * generation is closed only after its last request finished.
 */
import { BlockList, isIP } from "node:net";
import { OAuthVerifier } from "../auth/access-tokens.js";
import { KeyStore } from "../auth/api-keys.js";
import {
  type AccessTokenVerifier,
  type Authenticator,
  BearerAuthenticator,
  unauthenticated,
} from "../auth/authenticate.js";
import { JwksCache } from "../auth/jwks.js";
import { type Config, parseAddressRange } from "../config/schema.js";
import { Upstream } from "../http/proxy.js";
import type { Logger } from "../log.js";
import type { GatewayMetrics } from "../telemetry/metrics.js";

export interface GenerationDeps {
  log: Logger;
  /** Absent for `check-config`, which serves nothing. */
  metrics?: GatewayMetrics;
  /** The generation being replaced: its JWKS cache is kept when the new config fetches the same. */
  previous?: Generation;
  /** Fetch the JWKS before returning (run, reload). `check-config` builds without the network. */
  prime?: boolean;
}

/** What the OAuth resource server needs at request time. */
export interface OAuthRuntime {
  verifier: OAuthVerifier;
  issuer: string;
  requiredScopes: readonly string[];
}

export class Generation {
  readonly id: number;
  readonly config: Config;
  readonly authenticator: Authenticator;
  readonly upstream: Upstream;
  /** Undefined while `auth.oauth.enabled` is false. */
  readonly oauth: OAuthRuntime | undefined;
  readonly allowedOrigins: ReadonlySet<string>;
  readonly #trustedProxies: BlockList | undefined;
  #inFlight = 0;
  #retired = false;
  #closed: Promise<void> | undefined;

  private constructor(
    id: number,
    config: Config,
    authenticator: Authenticator,
    oauth: OAuthRuntime | undefined,
  ) {
    this.id = id;
    this.config = config;
    this.authenticator = authenticator;
    this.oauth = oauth;
    this.upstream = new Upstream(config.upstream);
    this.allowedOrigins = new Set(config.cors.allowed_origins);
    this.#trustedProxies = trustedProxies(config.trust_proxy);
  }

  /**
   * Provisions a generation. With `prime`, a JWKS that is new to this config is fetched first:
   * a generation that cannot verify tokens is never swapped in. Throws when the config cannot
   * be used, and then leaks nothing.
   */
  static async build(id: number, config: Config, deps: GenerationDeps): Promise<Generation> {
    const { log, metrics } = deps;
    if (!config.auth.enabled) return new Generation(id, config, unauthenticated, undefined);

    const keys =
      config.auth.keys.length > 0
        ? new KeyStore(config.auth.keys, {
            onArgon2Run: ({ keyId, matched }) => {
              metrics?.argon2Ran();
              log.debug(
                { key_id: keyId, result: matched ? "match" : "no_match", generation: id },
                "argon2 verification",
              );
            },
            ...(metrics && { onLookup: (hit: boolean) => metrics.cacheLookup("api_key", hit) }),
          })
        : undefined;
    const oauth = config.auth.oauth.enabled ? await buildOAuth(config, deps) : undefined;
    const accessTokens: AccessTokenVerifier | undefined = oauth?.verifier;
    const authenticator = new BearerAuthenticator({
      ...(keys && { keys }),
      ...(accessTokens && { accessTokens }),
    });
    return new Generation(id, config, authenticator, oauth);
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** True when `address` is a reverse proxy whose X-Forwarded-* headers are believed. */
  trustsProxy(address: string | undefined): boolean {
    if (!this.#trustedProxies || address === undefined) return false;
    const plain = address.startsWith("::ffff:") ? address.slice(7) : address;
    return this.#trustedProxies.check(plain, plain.includes(":") ? "ipv6" : "ipv4");
  }

  /**
   * The client's address: the connection's peer, or, when that peer is a trusted proxy, the
   * nearest X-Forwarded-For entry that is not itself a trusted proxy (entries further left
   * were written by the client and prove nothing).
   */
  clientAddress(
    peer: string | undefined,
    forwardedFor: string | string[] | undefined,
  ): string | null {
    if (peer === undefined) return null;
    if (forwardedFor === undefined || !this.trustsProxy(peer)) return peer;
    const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(",") : forwardedFor)
      .split(",")
      .map((hop) => hop.trim())
      .filter((hop) => isIP(hop) !== 0);
    for (let index = hops.length - 1; index >= 0; index--) {
      const hop = hops[index] as string;
      if (!this.trustsProxy(hop) || index === 0) return hop;
    }
    return peer;
  }

  retain(): void {
    this.#inFlight++;
  }

  release(): void {
    this.#inFlight--;
    if (this.#retired && this.#inFlight === 0) void this.close();
  }

  /** Marks the generation replaced; it closes once its last request has finished. */
  retire(): void {
    this.#retired = true;
    if (this.#inFlight === 0) void this.close();
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.oauth?.verifier.jwks.release();
      await this.upstream.close();
    })();
    return this.#closed;
  }
}

async function buildOAuth(
  config: Config,
  { log, metrics, previous, prime = true }: GenerationDeps,
): Promise<OAuthRuntime> {
  const settings = config.auth.oauth;
  const source = {
    url: settings.jwks_url as string,
    cacheTtlMs: settings.jwks_cache_ttl,
    fetchTimeoutMs: config.limits.jwks_fetch_timeout,
  };
  const kept = previous?.oauth?.verifier.jwks;
  let jwks: JwksCache;
  if (kept?.sameSource(source)) {
    jwks = kept.retain();
  } else {
    jwks = new JwksCache({
      ...source,
      log,
      ...(metrics && { onFetch: (ok: boolean) => metrics.jwksFetched(ok) }),
    }).retain();
    if (prime) {
      try {
        await jwks.prime();
      } catch (error) {
        jwks.release();
        throw new JwksPrimeError(`oauth: prime jwks: ${(error as Error).message}`, {
          cause: error,
        });
      }
    }
  }
  return {
    verifier: new OAuthVerifier(settings, jwks, {
      ...(metrics && { onLookup: (hit: boolean) => metrics.cacheLookup("access_token", hit) }),
    }),
    issuer: settings.issuer as string,
    requiredScopes: settings.required_scopes,
  };
}

/** The JWKS of a new config could not be fetched (exit 78 at startup; reload keeps the old). */
export class JwksPrimeError extends Error {
  override readonly name = "JwksPrimeError";
}

function trustedProxies(ranges: readonly string[]): BlockList | undefined {
  if (ranges.length === 0) return undefined;
  const list = new BlockList();
  for (const range of ranges) {
    const parsed = parseAddressRange(range);
    if (parsed) list.addSubnet(...parsed);
  }
  return list;
}
