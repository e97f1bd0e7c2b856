/**
 * A generation is everything the request path needs, built from one config: the route table
 * (each route with its upstream, authenticator and steps), limits, CORS and proxy trust. It is
 * immutable; a reload builds a complete new one and swaps a single reference. Requests retain the generation they started on, so an old
 * generation is closed only after its last request finished.
 */
import { createHash, randomUUID } from "node:crypto";
import { BlockList, isIP } from "node:net";
import { type KeySource, OAuthVerifier } from "../auth/access-tokens.js";
import { KeyStore } from "../auth/api-keys.js";
import {
  type AccessTokenVerifier,
  type Authenticator,
  BearerAuthenticator,
  unauthenticated,
} from "../auth/authenticate.js";
import { JwksCache } from "../auth/jwks.js";
import { AuthorizationServer } from "../authorization-server/server.js";
import { type StoreType, sqliteAvailable } from "../authorization-server/store.js";
import { secretBoxOf } from "../config/load.js";
import { authorizationServerOnRedis, type Config } from "../config/schema.js";
import { parseAddressRange } from "../lib/addresses.js";
import { Outbound } from "../lib/outbound.js";
import type { Logger } from "../log.js";
import { ToolHeaderCatalog } from "../mcp/param-headers.js";
import { mcpSteps, UNMATCHED_STEPS } from "../pipeline/steps.js";
import { Policy } from "../policy/policy.js";
import { RateLimiter } from "../policy/rate-limit.js";
import type { SecretBox } from "../secrets/cipher.js";
import { RedisStore } from "../store/redis.js";
import type { GatewayMetrics } from "../telemetry/metrics.js";
import type { Tracing } from "../telemetry/tracing.js";
import { resolveTracing } from "../telemetry/tracing-settings.js";
import { buildUpstream, type UpstreamDeps } from "../upstream/build.js";
import {
  buildCredentials,
  type UpstreamAuthConfig,
  type UpstreamCredentials,
  upstreamCredentials,
} from "../upstream/credentials.js";
import { Delegation } from "../upstream/delegation.js";
import { parseSessionKey, SessionSealer } from "../upstream/session-seal.js";
import { RedisTokenStore, TokenStore } from "../upstream/token-store.js";
import type { Upstream } from "../upstream/upstream.js";
import { version } from "../version.js";
import {
  type Route,
  type RouteOAuth,
  type RouteSpec,
  RouteTable,
  routeSpecs,
  suffixedMetadataPath,
} from "./routes.js";
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

export class Generation {
  readonly id: number;
  readonly config: Config;
  readonly routes: RouteTable;
  /** The embedded authorization server, while `authorization_server.enabled`. */
  readonly authorizationServer: AuthorizationServer | undefined;
  /** Per-user upstream delegation (`/oauth/connect/...`, `/oauth/callback`), while a route has it. */
  readonly delegation: Delegation | undefined;
  /**
   * Spans and their export, while tracing is on: kept by a reload that leaves the settings as
   * they were; otherwise the requests this generation started export to its settings' collector
   * to their end, and the new generation's go to the new one.
   */
  readonly tracing: Tracing | undefined;
  /** The pseudo-route of paths no route has: 404, audited. */
  readonly unmatched: Route;
  readonly allowedOrigins: ReadonlySet<string>;
  /** The `host[:port]` of every configured public URL: same-origin requests from there pass. */
  readonly ownHosts: ReadonlySet<string>;
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
      routes: RouteTable;
      authorizationServer: AuthorizationServer | undefined;
      delegation: Delegation | undefined;
      tracing: Tracing | undefined;
      components: UsagePool;
      held: readonly string[];
    },
  ) {
    this.delegation = parts.delegation;
    this.tracing = parts.tracing;
    this.id = id;
    this.config = config;
    this.routes = parts.routes;
    this.authorizationServer = parts.authorizationServer;
    this.unmatched = {
      path: "unmatched",
      matched: false,
      upstream: NO_UPSTREAM,
      authenticator: unauthenticated,
      oauth: undefined,
      steps: UNMATCHED_STEPS,
      toolHeaders: new ToolHeaderCatalog(),
    };
    this.#components = parts.components;
    this.#held = parts.held;
    this.allowedOrigins = new Set(config.cors.allowed_origins);
    this.ownHosts = new Set(
      routeSpecs(config).flatMap(({ publicUrl }) =>
        publicUrl === undefined ? [] : [new URL(publicUrl).host.toLowerCase()],
      ),
    );
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
      // The guard of every fetch the gateway makes itself; a component, since the JWKS caches
      // and token caches kept by a reload hold it.
      const outbound = await acquire(`outbound ${Outbound.keyOf(config.outbound)}`, () => {
        return new Outbound(config.outbound);
      });
      const built: BuildDeps = { ...deps, outbound };
      const tracing = await acquireTracing(config, deps, acquire);
      const authorizationServer = await buildAuthorizationServer(config, built, acquire);
      const delegation = await buildDelegation(config, built, acquire, authorizationServer);
      const routes = await buildRoutes(id, config, built, acquire, authorizationServer, delegation);
      return new Generation(id, config, {
        routes,
        authorizationServer,
        delegation,
        tracing,
        components,
        held,
      });
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

/** What building a generation's parts needs: the deps, and the generation's fetch guard. */
type BuildDeps = GenerationDeps & { outbound: Outbound };

type Acquire = <T extends Component>(key: string, make: () => T | Promise<T>) => Promise<T>;

/**
 * The span exporter of the config's telemetry settings (with the OTEL_* variables they fall back
 * to), keyed by a hash of them (headers may hold a collector's API key). `check-config` (prime:
 * false) exports nothing.
 */
async function acquireTracing(
  config: Config,
  { log, prime = true }: GenerationDeps,
  acquire: Acquire,
): Promise<Tracing | undefined> {
  const settings = prime ? resolveTracing(config.telemetry) : undefined;
  if (settings === undefined) return undefined;
  const digest = createHash("sha256").update(JSON.stringify(settings)).digest("base64url");
  return acquire(`tracing ${digest}`, async () => {
    // The SDK is loaded only when tracing is on.
    const { Tracing } = await import("../telemetry/tracing.js");
    const { url, protocol, serviceName } = settings;
    log.info(
      { url, protocol, service_name: serviceName },
      "tracing: exporting spans over OTLP/HTTP",
    );
    return new Tracing(settings, version(), log);
  });
}

/**
 * The embedded authorization server: one per issuer and settings (and, on Redis, the
 * connection's and the sealing key's), kept across reloads.
 */
async function buildAuthorizationServer(
  config: Config,
  deps: BuildDeps,
  acquire: Acquire,
): Promise<AuthorizationServer | undefined> {
  const settings = config.authorization_server;
  if (!config.auth.enabled || !settings.enabled) return undefined;
  const { log, prime = true } = deps;
  const issuer = settings.issuer ?? new URL(config.auth.oauth.public_url as string).origin;
  const store = storeTypeOf(config, log);
  let shared: { redis: RedisStore; box: SecretBox } | undefined;
  if (store === "redis") {
    const box = secretBoxOf(config, process.env);
    if (box === undefined) {
      throw new Error(
        "authorization_server on the redis store keeps its signing keys there, sealed: set secrets.encryption_key (or $AUTH_ENCRYPTION_SECRET)",
      );
    }
    const redis = await acquireRedis(authorizationServerRedis(config), deps, acquire);
    if (redis) shared = { redis, box };
  }
  const where = shared
    ? `redis ${redisKey(authorizationServerRedis(config))} ${shared.box.keyId}`
    : store;
  const key = `authorization-server ${issuer} ${where} ${JSON.stringify(settings)} ${deps.outbound.key}`;
  return acquire(key, () =>
    // check-config (prime: false) creates no files: keys it would make stay in memory.
    AuthorizationServer.start(settings, issuer, log, {
      persist: prime,
      store,
      outbound: deps.outbound,
      ...(shared && { shared }),
    }),
  );
}

/**
 * The connection of the authorization server's redis store: the gateway's own `store` when the
 * URLs agree (or none is given), else one of its own with the default prefix and timeout.
 */
export function authorizationServerRedis(config: Config): Config["store"] {
  const own = config.authorization_server.store;
  const url = own?.type === "redis" ? own.url : undefined;
  const top = config.store;
  if (top.type === "redis" && (url === undefined || url === top.url)) return top;
  return { type: "redis", url: url as string, key_prefix: "mcpgw:", timeout: 250 };
}

async function buildRoutes(
  id: number,
  config: Config,
  deps: BuildDeps,
  acquire: Acquire,
  authorizationServer: AuthorizationServer | undefined,
  delegation: Delegation | undefined,
): Promise<RouteTable> {
  const specs = routeSpecs(config);
  const keys = buildKeyStore(id, config, deps);
  // One compiled policy for every route of the generation (rules match on the route).
  const policy = config.policy ? new Policy(config.policy) : undefined;
  const limits = config.rate_limits;
  const limiter =
    limits && limits.length > 0
      ? await acquireRateLimiter(limits, config.store, deps, acquire)
      : undefined;
  // The keys tokens are verified with: the embedded server's own, or a fetched JWKS.
  const jwks: KeySource | undefined =
    authorizationServer ??
    (config.auth.enabled && config.auth.oauth.enabled
      ? await acquireJwks(config, deps, acquire)
      : undefined);
  const issuer = authorizationServer?.issuer ?? (config.auth.oauth.issuer as string);
  // With the embedded server, each route is a resource it issues tokens for, at its URL.
  const resourceOf = (spec: RouteSpec) =>
    spec.publicUrl ?? (authorizationServer ? `${issuer}${spec.path}` : undefined);
  authorizationServer?.useResources(
    specs.map((spec) => ({ indicator: resourceOf(spec) as string, scopes: spec.requiredScopes })),
  );
  // One verifier per audience: routes that accept the same tokens share its cache.
  const verifiers = new Map<string, OAuthVerifier>();
  const sessionKey = config.sessions.key;
  const upstreamDeps: UpstreamDeps = {
    log: deps.log,
    sealer: sessionKey === undefined ? PROCESS_SEALER : new SessionSealer(parsedKey(sessionKey)),
  };
  // A pool seals with the key: another key is another pool (its sessions cannot be opened).
  const sealedWith =
    sessionKey === undefined
      ? "process"
      : createHash("sha256").update(sessionKey).digest("hex").slice(0, 16);
  const routes: Route[] = [];
  for (const spec of specs) {
    // Kept across reloads while the route's path and upstream settings are unchanged.
    // Its credentials are a component of their own: a new token does not drop connections.
    const { auth, ...connection } = spec.upstream;
    const identity = `${spec.path} ${JSON.stringify(connection)}`;
    const key = spec.upstream.targets ? `${identity} sealed=${sealedWith}` : identity;
    const upstream = await acquire(`upstream ${key}`, () =>
      buildUpstream(spec.path, spec.upstream, upstreamDeps),
    );
    let oauth: RouteOAuth | undefined;
    if (jwks) {
      const audience = (
        authorizationServer ? (spec.audience ?? resourceOf(spec)) : spec.audience
      ) as string;
      let verifier = verifiers.get(audience);
      if (verifier === undefined) {
        verifier = new OAuthVerifier({ ...config.auth.oauth, issuer, audience }, jwks, {
          ...(deps.metrics && {
            onLookup: (hit: boolean) => deps.metrics?.cacheLookup("access_token", hit),
          }),
        });
        verifiers.set(audience, verifier);
      }
      oauth = {
        verifier,
        issuer,
        requiredScopes: spec.requiredScopes,
        publicUrl: resourceOf(spec),
        metadataPath: spec.primary
          ? config.auth.oauth.metadata_path
          : suffixedMetadataPath(spec.path),
      };
    }
    routes.push({
      path: spec.path,
      matched: true,
      upstream,
      authenticator: authenticatorOf(config, keys, oauth?.verifier),
      oauth,
      steps: mcpSteps(
        spec,
        policy,
        limiter?.step,
        auth &&
          upstreamCredentials(
            auth.type === "authorization_code"
              ? (delegation as Delegation).credentials(spec.path, auth)
              : await acquireCredentials(spec.path, auth, deps, acquire),
          ),
      ),
      toolHeaders: new ToolHeaderCatalog(),
    });
  }
  return new RouteTable(routes, specs[0]?.primary ? config.auth.oauth.metadata_path : undefined);
}

function authenticatorOf(
  config: Config,
  keys: KeyStore | undefined,
  accessTokens: AccessTokenVerifier | undefined,
): Authenticator {
  if (!config.auth.enabled) return unauthenticated;
  return new BearerAuthenticator({ ...(keys && { keys }), ...(accessTokens && { accessTokens }) });
}

/** One key store for every route: a key verified on one route is verified on all. */
function buildKeyStore(id: number, config: Config, { log, metrics }: GenerationDeps) {
  if (!config.auth.enabled || config.auth.keys.length === 0) return undefined;
  return new KeyStore(config.auth.keys, {
    onArgon2Run: ({ keyId, matched }) => {
      metrics?.argon2Ran();
      log.debug(
        { key_id: keyId, result: matched ? "match" : "no_match", generation: id },
        "argon2 verification",
      );
    },
    ...(metrics && { onLookup: (hit: boolean) => metrics.cacheLookup("api_key", hit) }),
  });
}

/**
 * The per-user delegation of the routes whose `upstream.auth` is `authorization_code`: one
 * component (its token store and pending connects kept across reloads) for the store's place
 * and key. Undefined when no route has it.
 */
async function buildDelegation(
  config: Config,
  deps: BuildDeps,
  acquire: Acquire,
  authorizationServer: AuthorizationServer | undefined,
): Promise<Delegation | undefined> {
  const routes = new Map<string, Extract<UpstreamAuthConfig, { type: "authorization_code" }>>();
  for (const spec of routeSpecs(config)) {
    if (spec.upstream.auth?.type === "authorization_code")
      routes.set(spec.path, spec.upstream.auth);
  }
  if (routes.size === 0) return undefined;
  const box = secretBoxOf(config, process.env);
  if (box === undefined) {
    throw new Error(
      "upstream.auth type authorization_code keeps users' tokens sealed: set secrets.encryption_key (or $AUTH_ENCRYPTION_SECRET)",
    );
  }
  const redis = await acquireRedis(config.store, deps, acquire);
  const stateDir = deps.prime === false ? undefined : config.secrets.state_dir;
  const where = redis ? `redis ${redisKey(config.store)}` : (stateDir ?? "memory");
  const delegation = await acquire(`delegation ${where} ${box.keyId}`, () => {
    const store = redis ? new RedisTokenStore(redis, box) : new TokenStore(stateDir, box);
    return new Delegation(box, store, deps.log);
  });
  delegation.use(routes, publicOrigin(config, authorizationServer), deps.outbound);
  return delegation;
}

/** The origin clients reach the gateway at: of the public URL, the issuer, else the listener. */
function publicOrigin(
  config: Config,
  authorizationServer: AuthorizationServer | undefined,
): string {
  const url = config.auth.oauth.public_url ?? authorizationServer?.issuer;
  if (url !== undefined) return new URL(url).origin;
  const { host, port } = config.listen;
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/**
 * A route's credentials towards its upstream. A client_credentials token is kept across reloads
 * that leave the settings as they were (keyed by their hash: they hold the secret); a static
 * token is read again (its file may have changed).
 */
async function acquireCredentials(
  route: string,
  auth: Exclude<UpstreamAuthConfig, { type: "authorization_code" }>,
  deps: BuildDeps,
  acquire: Acquire,
): Promise<UpstreamCredentials> {
  const onFetch = (result: string) => deps.metrics?.upstreamTokenFetch(route, result);
  if (auth.type === "bearer") {
    const bearer = await buildCredentials(auth, deps.log, deps.outbound);
    return acquire(`upstream-auth ${route} bearer ${randomUUID()}`, () => bearer);
  }
  const digest = createHash("sha256").update(JSON.stringify(auth)).digest("base64url");
  return acquire(`upstream-auth ${route} ${digest} ${deps.outbound.key}`, () =>
    buildCredentials(auth, deps.log.child({ route }), deps.outbound, onFetch),
  );
}

/**
 * The rate limits' buckets, on the store: kept by a reload that leaves both as they were. The
 * Redis connection is a component of its own, keyed by a hash of its settings (the URL may hold
 * a password).
 */
async function acquireRateLimiter(
  limits: NonNullable<Config["rate_limits"]>,
  store: Config["store"],
  deps: GenerationDeps,
  acquire: Acquire,
): Promise<RateLimiter> {
  const redis = await acquireRedis(store, deps, acquire);
  const storeKey = redis ? `redis ${redisKey(store)}` : "memory";
  return acquire(`rate-limits ${storeKey} ${JSON.stringify(limits)}`, () => {
    return new RateLimiter(limits, { redis, onLimited: (id) => deps.metrics?.rateLimited(id) });
  });
}

/** The shared Redis store's connection, one per settings (keyed by their hash: the URL may hold a password). */
async function acquireRedis(
  store: Config["store"],
  deps: GenerationDeps,
  acquire: Acquire,
): Promise<RedisStore | undefined> {
  if (store.type !== "redis") return undefined;
  return acquire(`store redis ${redisKey(store)}`, async () => {
    const opened = new RedisStore(
      { url: store.url, keyPrefix: store.key_prefix, timeout: store.timeout },
      deps.log,
      () => deps.metrics?.storeError("redis"),
    );
    // check-config builds without the network.
    if (deps.prime !== false) await opened.connect();
    return opened;
  });
}

function redisKey(store: Config["store"]): string {
  return createHash("sha256").update(JSON.stringify(store)).digest("base64url");
}

async function acquireJwks(
  config: Config,
  { log, metrics, outbound, prime = true }: BuildDeps,
  acquire: Acquire,
): Promise<JwksCache> {
  const settings = config.auth.oauth;
  const source = {
    url: settings.jwks_url as string,
    cacheTtlMs: settings.jwks_cache_ttl,
    fetchTimeoutMs: config.limits.jwks_fetch_timeout,
  };
  // A config that fetches the same keys the same way keeps the cache: no fetch on reload.
  const key = `jwks ${source.url} ttl=${source.cacheTtlMs} timeout=${source.fetchTimeoutMs} outbound=${outbound.key}`;
  return acquire(key, async () => {
    const cache = new JwksCache({
      ...source,
      outbound,
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
}

/**
 * The store the config asks for; unset, SQLite where this Node has it, else memory, said once.
 * (An explicit sqlite on a Node without it is refused by preflight.)
 */
function storeTypeOf(config: Config, log: Logger): StoreType {
  if (authorizationServerOnRedis(config)) return "redis";
  const own = config.authorization_server.store;
  if (own !== undefined) return own.type;
  if (sqliteAvailable()) return "sqlite";
  log.warn(
    { node: process.version },
    "authorization_server: this Node has no node:sqlite (22.5+): clients, grants and refresh tokens are kept in memory and lost on restart",
  );
  return "memory";
}

/** Seals pool session ids while `sessions.key` is unset: sessions last as long as the process. */
const PROCESS_SEALER = SessionSealer.random();

function parsedKey(text: string): Buffer {
  const key = parseSessionKey(text);
  if (typeof key === "string") throw new Error(`sessions.key: ${key}`);
  return key;
}

/** The unmatched pseudo-route never forwards; its steps refuse first. */
const NO_UPSTREAM: Upstream = {
  forward: () => Promise.reject(new Error("the unmatched route has no upstream")),
  close: () => {},
};

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
