/**
 * Prometheus metrics (`GET /metrics`). One registry per process; the request path only
 * increments counters and observes histograms, and label values come from closed sets so that a
 * client cannot grow the number of series by sending made-up JSON-RPC methods.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { AuditRecord } from "../audit/record.js";

/** MCP methods (2025-06-18) counted under their own name; anything else is `other`. */
const KNOWN_METHODS = new Set([
  "initialize",
  "ping",
  "tools/list",
  "tools/call",
  "resources/list",
  "resources/read",
  "resources/templates/list",
  "resources/subscribe",
  "resources/unsubscribe",
  "prompts/list",
  "prompts/get",
  "completion/complete",
  "logging/setLevel",
  "notifications/initialized",
  "notifications/cancelled",
  "notifications/progress",
  "notifications/roots/list_changed",
  "batch",
  "GET",
  "DELETE",
]);

export type CredentialCache = "api_key" | "access_token";

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly #requests: Counter<"route" | "method" | "auth_type" | "auth_result" | "status">;
  readonly #duration: Histogram<"route" | "method">;
  readonly #upstreamDuration: Histogram<"route">;
  readonly #jwksFetches: Counter<"result">;
  readonly #cacheLookups: Counter<"cache" | "result">;
  readonly #argon2Runs: Counter;
  readonly #reloads: Counter<"result">;
  readonly #generation: Gauge;
  readonly #auditWriteErrors: Counter;
  readonly #requestCounters = new Map<string, Counter.Internal>();
  readonly #durationHistograms = new Map<string, Histogram.Internal<"route" | "method">>();
  readonly #upstreamHistograms = new Map<string, Histogram.Internal<"route">>();
  #inFlightCount = 0;
  #streamCount = 0;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: "mcpgw_" });
    this.#requests = new Counter({
      name: "mcpgw_requests_total",
      help: "Requests to the MCP endpoint, refused ones included.",
      labelNames: ["route", "method", "auth_type", "auth_result", "status"],
      registers,
    });
    this.#duration = new Histogram({
      name: "mcpgw_request_duration_seconds",
      help: "Time until the response finished (streams: until closed).",
      labelNames: ["route", "method"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.#upstreamDuration = new Histogram({
      name: "mcpgw_upstream_duration_seconds",
      help: "Time until the upstream's response headers.",
      labelNames: ["route"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    // Gauges of plain numbers, read at scrape time: the request path only adds and subtracts.
    const inFlight = () => this.#inFlightCount;
    const streams = () => this.#streamCount;
    new Gauge({
      name: "mcpgw_requests_in_flight",
      help: "Requests to the MCP endpoint being handled.",
      registers,
      collect() {
        this.set(inFlight());
      },
    });
    new Gauge({
      name: "mcpgw_sse_streams_open",
      help: "Server-sent event streams open to clients.",
      registers,
      collect() {
        this.set(streams());
      },
    });
    this.#jwksFetches = new Counter({
      name: "mcpgw_jwks_fetches_total",
      help: "JWKS fetches by result (a failed one keeps the last good keys).",
      labelNames: ["result"],
      registers,
    });
    this.#cacheLookups = new Counter({
      name: "mcpgw_credential_cache_lookups_total",
      help: "Lookups in the verified API key and access token caches.",
      labelNames: ["cache", "result"],
      registers,
    });
    this.#argon2Runs = new Counter({
      name: "mcpgw_argon2_runs_total",
      help: "argon2id verifications of API keys.",
      registers,
    });
    this.#reloads = new Counter({
      name: "mcpgw_config_reloads_total",
      help: "Config reloads by result.",
      labelNames: ["result"],
      registers,
    });
    this.#generation = new Gauge({
      name: "mcpgw_config_generation",
      help: "The config generation serving requests (1 at start, +1 per applied reload).",
      registers,
    });
    this.#auditWriteErrors = new Counter({
      name: "mcpgw_audit_write_errors_total",
      help: "Failed writes to the audit log.",
      registers,
    });
    // Series exist at 0 from the start, so that rate() and alerts see the first increment.
    for (const result of ["ok", "failed"]) {
      this.#reloads.inc({ result }, 0);
      this.#jwksFetches.inc({ result }, 0);
    }
    for (const cache of ["api_key", "access_token"]) {
      for (const result of ["hit", "miss"]) this.#cacheLookups.inc({ cache, result }, 0);
    }
  }

  requestStarted(): void {
    this.#inFlightCount++;
  }

  /**
   * Called once per request, with its finished audit record. The labelled children are kept by
   * a joined key: the label sets are closed, and prom-client would otherwise sort and hash the
   * label object on every request.
   */
  requestFinished(route: string, record: AuditRecord, durationSeconds: number): void {
    this.#inFlightCount--;
    const method = methodLabel(record.method);
    const { auth_type, auth_result, status } = record;
    const requestKey = `${route}\0${method}\0${auth_type}\0${auth_result}\0${status}`;
    let counter = this.#requestCounters.get(requestKey);
    if (!counter) {
      counter = this.#requests.labels({ route, method, auth_type, auth_result, status });
      this.#requestCounters.set(requestKey, counter);
    }
    counter.inc();
    const durationKey = `${route}\0${method}`;
    let histogram = this.#durationHistograms.get(durationKey);
    if (!histogram) {
      histogram = this.#duration.labels({ route, method });
      this.#durationHistograms.set(durationKey, histogram);
    }
    histogram.observe(durationSeconds);
  }

  upstreamResponded(route: string, seconds: number): void {
    let histogram = this.#upstreamHistograms.get(route);
    if (!histogram) {
      histogram = this.#upstreamDuration.labels({ route });
      this.#upstreamHistograms.set(route, histogram);
    }
    histogram.observe(seconds);
  }

  streamOpened(): void {
    this.#streamCount++;
  }

  streamClosed(): void {
    this.#streamCount--;
  }

  jwksFetched(ok: boolean): void {
    this.#jwksFetches.inc({ result: ok ? "ok" : "failed" });
  }

  cacheLookup(cache: CredentialCache, hit: boolean): void {
    this.#cacheLookups.inc({ cache, result: hit ? "hit" : "miss" });
  }

  argon2Ran(): void {
    this.#argon2Runs.inc();
  }

  reloaded(ok: boolean, generation?: number): void {
    this.#reloads.inc({ result: ok ? "ok" : "failed" });
    if (generation !== undefined) this.#generation.set(generation);
  }

  generationStarted(generation: number): void {
    this.#generation.set(generation);
  }

  auditWriteFailed(): void {
    this.#auditWriteErrors.inc();
  }

  /** The Prometheus text exposition. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

function methodLabel(method: string | null): string {
  if (method === null) return "none";
  return KNOWN_METHODS.has(method) ? method : "other";
}
