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
import type { Logger } from "../log.js";
import type { GatewayMetrics } from "../telemetry/metrics.js";
import { HttpUpstream } from "../upstream/http.js";
import type { Upstream } from "../upstream/upstream.js";
import { type Component, UsagePool } from "./usage-pool.js";

export interface GenerationDeps {
  log: Logger;
  /** Absent for `check-config`, which serves nothing. */
  metrics?: GatewayMetrics;
  /**
   * Components shared across generations (JWKS caches, upstream connection pools), by the
   * identity of their configuration. Default: a pool of this generation's own.
   */
  components?: UsagePool;
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
  readonly #components: UsagePool;
  /** The keys of the components this generation acquired, released when it closes. */
  readonly #held: readonly string[];
  #inFlight = 0;
  #retired = false;
  #closed: Promise<void> | undefined;

  private constructor(
    id: number,
    config: Config,
    parts: {
      authenticator: Authenticator;
      oauth: OAuthRuntime | undefined;
      upstream: Upstream;
      components: UsagePool;
      held: readonly string[];
    },
  ) {
    this.id = id;
    this.config = config;
    this.authenticator = parts.authenticator;
    this.oauth = parts.oauth;
    this.upstream = parts.upstream;
    this.#components = parts.components;
    this.#held = parts.held;
    this.allowedOrigins = new Set(config.cors.allowed_origins);
    this.#trustedProxies = trustedProxies(config.trust_proxy);
  }

  /**
   * Provisions a generation. With `prime`, a JWKS that is new to this config is fetched first:
   * a generation that cannot verify tokens is never swapped in. Throws when the config cannot
   * be used, and then leaks nothing.
   */
  static async build(id: number, config: Config, deps: GenerationDeps): Promise<Generation> {
    const components = deps.components ?? new UsagePool();
    const held: string[] = [];
    const acquire = async <T extends Component>(key: string, make: () => T | Promise<T>) => {
      const component = await components.acquire(key, make);
      held.push(key);
      return component;
    };
    try {
      // Keyed by every upstream setting, so that a change to any of them builds a new pool.
      const upstream = await acquire(`upstream ${JSON.stringify(config.upstream)}`, () => {
        return new HttpUpstream(config.upstream);
      });
      const { authenticator, oauth } = await buildAuth(id, config, deps, acquire);
      return new Generation(id, config, { authenticator, oauth, upstream, components, held });
    } catch (error) {
      await Promise.all(held.map((key) => components.release(key)));
      throw error;
    }
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

  /** Lets go of its components; those no other generation holds close (upstream: after its requests). */
  close(): Promise<void> {
    this.#closed ??= Promise.all(this.#held.map((key) => this.#components.release(key))).then(
      () => {},
    );
    return this.#closed;
  }
}

type Acquire = <T extends Component>(key: string, make: () => T | Promise<T>) => Promise<T>;

async function buildAuth(
  id: number,
  config: Config,
  deps: GenerationDeps,
  acquire: Acquire,
): Promise<{ authenticator: Authenticator; oauth: OAuthRuntime | undefined }> {
  const { log, metrics } = deps;
  if (!config.auth.enabled) return { authenticator: unauthenticated, oauth: undefined };
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
  const oauth = config.auth.oauth.enabled ? await buildOAuth(config, deps, acquire) : undefined;
  const accessTokens: AccessTokenVerifier | undefined = oauth?.verifier;
  const authenticator = new BearerAuthenticator({
    ...(keys && { keys }),
    ...(accessTokens && { accessTokens }),
  });
  return { authenticator, oauth };
}

async function buildOAuth(
  config: Config,
  { log, metrics, prime = true }: GenerationDeps,
  acquire: Acquire,
): Promise<OAuthRuntime> {
  const settings = config.auth.oauth;
  const source = {
    url: settings.jwks_url as string,
    cacheTtlMs: settings.jwks_cache_ttl,
    fetchTimeoutMs: config.limits.jwks_fetch_timeout,
  };
  // A config that fetches the same keys the same way keeps the cache: no fetch on reload.
  const key = `jwks ${source.url} ttl=${source.cacheTtlMs} timeout=${source.fetchTimeoutMs}`;
  const jwks = await acquire(key, async () => {
    const cache = new JwksCache({
      ...source,
      log,
      ...(metrics && { onFetch: (ok: boolean) => metrics.jwksFetched(ok) }),
    });
    if (!prime) return cache;
    try {
      await cache.prime();
    } catch (error) {
      cache.close();
      throw new JwksPrimeError(`oauth: prime jwks: ${(error as Error).message}`, {
        cause: error,
      });
    }
    return cache;
  });
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
