/**
 * The running daemon: one listener, one audit log, and the current generation, which a
 * reload replaces as a whole. Start, reload and shutdown follow the contract's Signals section.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { AuditLog } from "../audit/writer.js";
import { diffConfig } from "../config/diff.js";
import { type LoadedConfig, loadConfigFile } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { ConfigError, type GatewayError } from "../errors.js";
import { admitOrigin, allowOrigin, answerPreflight, checkOrigin } from "../http/cors.js";
import { handleMcpRequest, holdOpenStream } from "../http/mcp-endpoint.js";
import { metadataUrl, resourceUrl, sendResourceMetadata } from "../http/protected-resource.js";
import { errorBody, sendGatewayError, sendJson } from "../http/responses.js";
import { createGatewayServer } from "../http/server.js";
import { flushLogs, type Logger } from "../log.js";
import type { Exchange, PipelineContext } from "../pipeline/exchange.js";
import { GatewayMetrics } from "../telemetry/metrics.js";
import type { Tracing } from "../telemetry/tracing.js";
import type { Upstream } from "../upstream/upstream.js";
import { version } from "../version.js";
import { Generation } from "./generation.js";
import { cannotOpen, preflight } from "./preflight.js";
import type { Route } from "./routes.js";
import { UsagePool } from "./usage-pool.js";

export interface GatewayOptions {
  configFile: string;
  log: Logger;
  /** Set when this process is one of `workers: N` (see runtime/workers.ts). */
  worker?: WorkerRole;
}

/** What a worker process does differently: the primary speaks for all of them. */
export interface WorkerRole {
  /** The exposition of every worker, given this one's (scrapes land on any worker). */
  metrics(local: string): Promise<string>;
}

export type ReloadTrigger = "SIGHUP" | "file change";

/** How a reload went (a worker reports it to the primary, which logs one line for all). */
export type ReloadResult =
  | { outcome: "reloaded"; generation: number; changed: readonly string[] }
  | { outcome: "unchanged"; generation: number }
  | { outcome: "failed"; generation: number; reason: string; problems?: readonly string[] };

export class Gateway implements PipelineContext {
  readonly log: Logger;
  readonly audit: AuditLog;
  readonly configFile: string;
  #generation: Generation;
  #server: Server;
  #draining = false;
  #active = 0;
  #idle: (() => void) | undefined;
  readonly #drainListeners = new Set<() => void>();
  /** Open GET streams by the upstream they are on (see onUpstreamDropped). */
  readonly #streams = new Map<Upstream, Set<() => void>>();
  #reloading: Promise<ReloadResult | undefined> = Promise.resolve(undefined);
  /**
   * The config the process started with: what the listener, the metrics listener, tracing and
   * the advertised URLs were built from. Restart-only keys are compared with it, not with the
   * last file loaded, so a reverted change stops being pending and a pending one is not
   * forgotten by a later reload of other keys.
   */
  readonly #running: Config;
  #restartPending: readonly string[] = [];
  /** JWKS caches and upstream pools, shared by the generations whose config asks for the same. */
  readonly #components: UsagePool;

  readonly metrics: GatewayMetrics;
  /** The separate listener of `metrics.listen`, when configured. */
  #metricsServer: Server | undefined;
  readonly #worker: WorkerRole | undefined;

  private constructor(
    configFile: string,
    log: Logger,
    generation: Generation,
    components: UsagePool,
    audit: AuditLog,
    metrics: GatewayMetrics,
    worker: WorkerRole | undefined,
  ) {
    this.#worker = worker;
    this.configFile = configFile;
    this.log = log;
    this.#generation = generation;
    this.#running = generation.config;
    this.#components = components;
    this.audit = audit;
    this.metrics = metrics;
    const { metrics: metricsConfig } = generation.config;
    const servesMetrics = metricsConfig.enabled && metricsConfig.listen === undefined;
    this.#server = createGatewayServer(generation.config.limits, {
      ...(servesMetrics && { metrics: (_req, res) => void this.#sendMetrics(res) }),
      dispatch: (req, res, path) => this.#dispatch(req, res, path),
      notReady: () => this.#notReady(),
    });
  }

  /** A request to anything but health and metrics, by the current generation's route table. */
  #dispatch(req: IncomingMessage, res: ServerResponse, path: string): void {
    const generation = this.#generation;
    const route = generation.routes.mcp(path);
    if (route !== undefined) {
      if (req.method === "OPTIONS") {
        answerPreflight(req, res, checkOrigin(req, generation), "GET, POST, DELETE");
      } else {
        this.#exchange(generation, route, req, res);
      }
      return;
    }
    const described = generation.routes.metadata(path);
    if (described !== undefined) {
      this.#serveMetadata(generation, described, req, res);
      return;
    }
    const delegation = generation.delegation;
    if (delegation?.handles(path)) {
      // Browser pages (a user connecting an upstream account), not an API: no CORS.
      delegation.handle(req, res, path);
      return;
    }
    const authorizationServer = generation.authorizationServer;
    if (authorizationServer?.handles(path)) {
      // Browser-based MCP clients register and fetch tokens cross-origin: the same
      // cors.allowed_origins as the MCP routes (oidc-provider's own CORS covers some endpoints).
      const origin = checkOrigin(req, generation);
      if (req.method === "OPTIONS" && req.headers.origin !== undefined) {
        answerPreflight(req, res, origin, "GET, POST");
        return;
      }
      if (origin === "allowed") allowOrigin(req, res);
      authorizationServer.handle(req, res, path);
      return;
    }
    this.#exchange(generation, generation.unmatched, req, res);
  }

  #exchange(generation: Generation, route: Route, req: IncomingMessage, res: ServerResponse) {
    this.#active++;
    // Counted until the audit line is queued: shutdown must not close the audit log first.
    handleMcpRequest(this, generation, route, req, res)
      .catch((error: unknown) => this.log.error({ err: error }, "request handler failed"))
      .finally(() => this.#requestDone());
  }

  #serveMetadata(
    generation: Generation,
    route: Route,
    req: IncomingMessage,
    res: ServerResponse,
  ): void {
    if (req.method === "OPTIONS") {
      answerPreflight(req, res, checkOrigin(req, generation), "GET");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      sendJson(res, 405, errorBody("method_not_allowed", `${req.method} is not allowed here`), {
        allow: "GET",
      });
      return;
    }
    try {
      admitOrigin(req, res, generation);
    } catch (error) {
      sendGatewayError(res, error as GatewayError);
      return;
    }
    sendResourceMetadata(res, route, resourceUrl(req, generation, route, this.listenOrigin));
  }

  /** Why /readyz answers 503, or undefined while the gateway takes traffic. */
  #notReady(): string | undefined {
    if (this.#draining) return "shutting_down";
    if (this.#generation.config.audit.on_error === "fail_closed" && !this.audit.healthy) {
      return "audit_unavailable";
    }
    return undefined;
  }

  /**
   * Loads the config, provisions the first generation, opens the audit log and listens.
   * Throws ConfigError for a config that cannot be used (exit 78).
   */
  static async start({ configFile, log, worker }: GatewayOptions): Promise<Gateway> {
    const loaded = await loadConfigFile(configFile);
    const { config } = loaded;
    log.level = config.log.level;
    await preflight(loaded);
    warnAboutAdvertisedUrl(config, log);
    warnAboutDemoKey(config, log);
    const metrics = new GatewayMetrics();
    const components = new UsagePool();
    const generation = await Generation.build(1, config, { log, metrics, components });
    metrics.generationStarted(generation.id);
    let audit: AuditLog;
    try {
      audit = await AuditLog.open(config.audit.path, {
        log,
        onWriteError: () => metrics.auditWriteFailed(),
        onDropped: (count) => metrics.auditRecordsDropped(count),
      });
    } catch (error) {
      await generation.close();
      throw auditOpenError(loaded, error);
    }
    const gateway = new Gateway(configFile, log, generation, components, audit, metrics, worker);
    if (!config.auth.enabled) warnUnauthenticated(log);
    await gateway.#listen(config);
    return gateway;
  }

  /** The current generation's tracing: undefined while tracing is off. */
  get tracing(): Tracing | undefined {
    return this.#generation.tracing;
  }

  /** This process's metrics in the Prometheus text format. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    const upstreams = this.#generation.routes.routes.flatMap((route) => {
      const status = route.upstream.status?.();
      return status === undefined ? [] : [{ route: route.path, status }];
    });
    return this.metrics.exposition(upstreams);
  }

  async #sendMetrics(res: ServerResponse): Promise<void> {
    try {
      const { contentType, body } = await this.exposition();
      const all = this.#worker ? await this.#worker.metrics(body) : body;
      res.writeHead(200, { "content-type": contentType, "cache-control": "no-store" }).end(all);
    } catch (error) {
      this.log.error({ err: error }, "metrics: collection failed");
      sendJson(res, 500, errorBody("server_error", "metrics collection failed"));
    }
  }

  get generation(): Generation {
    return this.#generation;
  }

  get draining(): boolean {
    return this.#draining;
  }

  onDrain(listener: () => void): () => void {
    this.#drainListeners.add(listener);
    return () => this.#drainListeners.delete(listener);
  }

  holdOpenStream(exchange: Exchange): void {
    holdOpenStream(this, exchange);
  }

  onUpstreamDropped(upstream: Upstream, listener: () => void): () => void {
    let listeners = this.#streams.get(upstream);
    if (listeners === undefined) {
      listeners = new Set();
      this.#streams.set(upstream, listeners);
    }
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.#streams.get(upstream) === listeners) {
        this.#streams.delete(upstream);
      }
    };
  }

  /**
   * After a reload: the streams on upstreams the new generation no longer uses (a removed
   * route, a changed upstream) end, so that the generations they hold close, and with them
   * the upstream and its stdio children.
   */
  #endStreamsOfDroppedUpstreams(next: Generation): void {
    const kept = new Set(next.routes.routes.map((route) => route.upstream));
    for (const [upstream, listeners] of [...this.#streams]) {
      if (kept.has(upstream)) continue;
      this.#streams.delete(upstream);
      for (const end of listeners) end();
    }
  }

  /** The bound address (port 0 resolved). */
  get address(): AddressInfo {
    return this.#server.address() as AddressInfo;
  }

  /** `http://host:port` of the listening socket. */
  get listenOrigin(): string {
    const { address, port } = this.address;
    return `http://${address.includes(":") ? `[${address}]` : address}:${port}`;
  }

  /** The first route's URL on the listening socket. */
  get url(): string {
    return `${this.listenOrigin}${this.#generation.routes.routes[0]?.path ?? "/mcp"}`;
  }

  resourceMetadataUrl(req: IncomingMessage, { generation, route }: Exchange): string | undefined {
    if (!route.oauth) return undefined;
    const resource = resourceUrl(req, generation, route, this.listenOrigin);
    return metadataUrl(resource, route.oauth.metadataPath);
  }

  async #listen(config: Config): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(config.listen.port, config.listen.host, () => {
        this.#server.off("error", reject);
        resolve();
      });
    });
    const { address, port } = this.address;
    this.log.info(
      {
        address,
        port,
        url: this.url,
        version: version(),
        config: path.resolve(this.configFile),
        node: process.version,
        generation: this.#generation.id,
      },
      // A worker's: the primary says "listening" once all of them are.
      this.#worker ? "worker listening" : "listening",
    );
    const metricsListen = config.metrics.enabled ? config.metrics.listen : undefined;
    if (metricsListen) {
      const server = createServer((req, res) => {
        if (req.url === "/metrics" && (req.method === "GET" || req.method === "HEAD")) {
          void this.#sendMetrics(res);
        } else {
          sendJson(res, 404, errorBody("not_found", "only /metrics is served here"));
        }
      });
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(metricsListen.port, metricsListen.host, () => resolve());
      });
      this.#metricsServer = server;
      const bound = server.address() as AddressInfo;
      this.log.info({ address: bound.address, port: bound.port }, "metrics listening");
    }
  }

  /**
   * Re-reads the config file and swaps in a new generation; on any failure the current one
   * keeps serving. The audit file is reopened either way, since logrotate sends SIGHUP too.
   * Reloads run one at a time, in order.
   */
  reload(trigger: ReloadTrigger): Promise<ReloadResult | undefined> {
    this.#reloading = this.#reloading.then(() => this.#reload(trigger));
    return this.#reloading;
  }

  /** Undefined while draining (nothing is reloaded then). */
  async #reload(trigger: ReloadTrigger): Promise<ReloadResult | undefined> {
    if (this.#draining) return undefined;
    // A worker's outcome is the primary's to announce, in one line for all workers.
    const announce = this.#worker ? "debug" : "info";
    const current = this.#generation;
    let next: Generation | undefined;
    try {
      const loaded = await loadConfigFile(this.configFile);
      const { config } = loaded;
      await preflight(loaded);
      const change = diffConfig(current.config, config);
      if (change.changed.length === 0) {
        await this.#reopenAudit(config.audit.path);
        this.metrics.reloaded(true);
        this.log[announce]({ trigger, generation: current.id }, "config unchanged");
        this.#trackRestart(config);
        return { outcome: "unchanged", generation: current.id };
      }
      next = await Generation.build(current.id + 1, config, {
        log: this.log,
        metrics: this.metrics,
        components: this.#components,
      });
      await this.audit.reopen(config.audit.path).catch((error: unknown) => {
        throw auditOpenError(loaded, error);
      });
      this.log.level = config.log.level;
      this.#server.headersTimeout = config.limits.headers_timeout;
      this.#server.requestTimeout = config.limits.request_timeout;
      this.#generation = next;
      current.retire();
      this.#endStreamsOfDroppedUpstreams(next);
      this.metrics.reloaded(true, next.id);
      if (!current.config.auth.oauth.enabled) warnAboutAdvertisedUrl(config, this.log);
      if (!current.config.auth.allow_demo_key) warnAboutDemoKey(config, this.log);
      this.log[announce](
        { trigger, generation: next.id, changed: change.changed },
        "config reloaded",
      );
      if (!config.auth.enabled && current.config.auth.enabled) warnUnauthenticated(this.log);
      this.#trackRestart(config);
      return { outcome: "reloaded", generation: next.id, changed: change.changed };
    } catch (error) {
      await next?.close();
      this.metrics.reloaded(false);
      const reason =
        error instanceof ConfigError ? error.problems.join("; ") : (error as Error).message;
      const problems = error instanceof ConfigError ? error.problems : undefined;
      this.log[this.#worker ? "debug" : "error"](
        { trigger, generation: current.id, ...(problems && { problems }) },
        `config reload failed: ${reason}`,
      );
      await this.#reopenAudit(current.config.audit.path);
      return { outcome: "failed", generation: current.id, reason, ...(problems && { problems }) };
    }
  }

  /**
   * Compares the restart-only keys of the file just loaded with what runs, and says so on
   * every reload while they differ (log line and `mcpgw_config_restart_pending`).
   */
  #trackRestart(config: Config): void {
    const pending = diffConfig(this.#running, config).restartRequired;
    const wasPending = this.#restartPending.length > 0;
    this.#restartPending = pending;
    this.metrics.restartPending(pending.length > 0);
    if (pending.length > 0) {
      this.log.warn({ keys: pending }, `restart required for: ${pending.join(", ")}`);
    } else if (wasPending) {
      this.log.info(
        "restart no longer required: the file's restart-only settings match the running ones",
      );
    }
  }

  /** SIGUSR1: reopens the audit file only (as nginx and others reopen their logs on USR1). */
  async reopenAuditLog(trigger: string): Promise<void> {
    if (this.#draining) return;
    await this.#reopenAudit(this.audit.path);
    this.log.info({ trigger, path: this.audit.path }, "audit file reopened");
  }

  async #reopenAudit(path: string): Promise<void> {
    try {
      await this.audit.reopen(path);
    } catch (error) {
      this.log.error(
        { err: error, path },
        "audit: reopen failed; still writing to the previous file",
      );
    }
  }

  /**
   * Stops accepting connections, lets requests in flight finish (at most `shutdown_timeout`),
   * then closes what is left, flushes the audit log and the logs.
   */
  async shutdown(signal: string): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    const timeoutMs = this.#generation.config.shutdown_timeout;
    this.log.info({ signal, in_flight: this.#active, timeout_ms: timeoutMs }, "shutting down");
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeIdleConnections();
    for (const listener of this.#drainListeners) listener();
    const finished = await this.#waitForIdle(timeoutMs);
    if (!finished) {
      this.log.warn(
        { in_flight: this.#active },
        "shutdown_timeout reached: closing remaining connections",
      );
    }
    // With no request in flight, what is left are idle keep-alive connections.
    this.#server.closeAllConnections();
    await closed;
    this.#metricsServer?.closeAllConnections();
    this.#metricsServer?.close();
    // The last generation's components close with it: the spans still buffered are exported.
    await this.#generation.close();
    await this.audit.close();
    this.log.info("stopped");
    await flushLogs(this.log);
  }

  #requestDone(): void {
    this.#active--;
    if (this.#active === 0) this.#idle?.();
  }

  #waitForIdle(timeoutMs: number): Promise<boolean> {
    if (this.#active === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.#idle = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
  }
}

/**
 * Without public_url, the metadata and challenges name the listen address, which clients
 * cannot use when it is a wildcard: said at startup (before the JWKS is fetched, so that it is
 * seen even when that fails) and when a reload turns OAuth on.
 */
function warnAboutAdvertisedUrl(config: Config, log: Logger): void {
  const { oauth } = config.auth;
  if (!config.auth.enabled || !oauth.enabled || oauth.public_url !== undefined) return;
  const { host } = config.listen;
  if (host === "0.0.0.0" || host === "::") {
    log.warn(
      { listen: `${host}:${config.listen.port}` },
      "oauth metadata advertises listen address: set auth.oauth.public_url to the URL clients use",
    );
  }
}

/** A reopen or open of `audit.path` that failed, located at the key that names it. */
function auditOpenError(loaded: LoadedConfig, error: unknown): ConfigError {
  const file = loaded.config.audit.path;
  return new ConfigError([
    loaded.problem(
      ["audit", "path"],
      cannotOpen(
        file,
        error as NodeJS.ErrnoException,
        `write permission on ${file} or its directory`,
      ),
    ),
  ]);
}

function warnAboutDemoKey(config: Config, log: Logger): void {
  if (!config.auth.enabled || !config.auth.allow_demo_key) return;
  log.warn(
    "auth.allow_demo_key is true: the demo key published in the README is accepted; never set it outside a demo",
  );
}

function warnUnauthenticated(log: Logger): void {
  log.warn("auth.enabled is false: the gateway accepts every request without credentials");
}
