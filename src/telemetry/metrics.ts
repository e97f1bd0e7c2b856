/**
 * Prometheus metrics (`GET /metrics`). The gateway's own series are plain numbers in maps,
 * keyed by their joined label values and rendered in the text format at scrape time: the
 * request path adds to a number instead of running a metrics library's label hashing on every
 * request. Process and runtime metrics come from prom-client. Label values come from closed
 * sets, so a client cannot grow the number of series by sending made-up JSON-RPC methods.
 */
import { collectDefaultMetrics, Registry } from "prom-client";
import type { AuditRecord } from "../audit/record.js";
import type { UpstreamStatus } from "../upstream/upstream.js";

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

const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export type CredentialCache = "api_key" | "access_token";

type Labels = Record<string, string>;

/** A counter family: one number per label set. */
class CounterFamily {
  readonly #series = new Map<string, { labels: Labels; value: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  /**
   * `key` must identify the label set (its values joined): the set itself is only built, by
   * `labels`, the first time a key is seen.
   */
  inc(key: string, labels: (() => Labels) | undefined, by = 1): void {
    const series = this.#series.get(key);
    if (series) series.value += by;
    else this.#series.set(key, { labels: labels?.() ?? {}, value: by });
  }

  has(key: string): boolean {
    return this.#series.has(key);
  }

  render(lines: string[]): void {
    lines.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`);
    for (const { labels, value } of this.#series.values()) {
      lines.push(`${this.name}${formatLabels(labels)} ${value}`);
    }
  }
}

/** A histogram family with fixed buckets. */
class HistogramFamily {
  readonly #series = new Map<
    string,
    { labels: Labels; counts: number[]; sum: number; count: number }
  >();

  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  observe(key: string, labels: (() => Labels) | undefined, value: number): void {
    let series = this.#series.get(key);
    if (!series) {
      series = {
        labels: labels?.() ?? {},
        counts: new Array(LATENCY_BUCKETS.length).fill(0),
        sum: 0,
        count: 0,
      };
      this.#series.set(key, series);
    }
    let bucket = 0;
    while (bucket < LATENCY_BUCKETS.length && value > (LATENCY_BUCKETS[bucket] as number)) bucket++;
    if (bucket < LATENCY_BUCKETS.length)
      series.counts[bucket] = (series.counts[bucket] as number) + 1;
    series.sum += value;
    series.count++;
  }

  has(key: string): boolean {
    return this.#series.has(key);
  }

  render(lines: string[]): void {
    lines.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`);
    for (const { labels, counts, sum, count } of this.#series.values()) {
      let cumulative = 0;
      LATENCY_BUCKETS.forEach((bound, index) => {
        cumulative += counts[index] as number;
        lines.push(
          `${this.name}_bucket${formatLabels({ ...labels, le: String(bound) })} ${cumulative}`,
        );
      });
      lines.push(`${this.name}_bucket${formatLabels({ ...labels, le: "+Inf" })} ${count}`);
      lines.push(`${this.name}_sum${formatLabels(labels)} ${sum}`);
      lines.push(`${this.name}_count${formatLabels(labels)} ${count}`);
    }
  }
}

function formatLabels(labels: Labels): string {
  const pairs = Object.entries(labels).map(
    ([key, value]) =>
      `${key}="${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`,
  );
  return pairs.length === 0 ? "" : `{${pairs.join(",")}}`;
}

export class GatewayMetrics {
  readonly #runtime = new Registry();
  readonly #requests = new CounterFamily(
    "mcpgw_requests_total",
    "Requests to the MCP endpoint, refused ones included.",
  );
  readonly #duration = new HistogramFamily(
    "mcpgw_request_duration_seconds",
    "Time until the response finished (streams: until closed).",
  );
  readonly #upstreamDuration = new HistogramFamily(
    "mcpgw_upstream_duration_seconds",
    "Time until the upstream's response headers.",
  );
  readonly #jwksFetches = new CounterFamily(
    "mcpgw_jwks_fetches_total",
    "JWKS fetches by result (a failed one keeps the last good keys).",
  );
  readonly #cacheLookups = new CounterFamily(
    "mcpgw_credential_cache_lookups_total",
    "Lookups in the verified API key and access token caches.",
  );
  readonly #argon2Runs = new CounterFamily(
    "mcpgw_argon2_runs_total",
    "argon2id verifications of API keys.",
  );
  readonly #reloads = new CounterFamily("mcpgw_config_reloads_total", "Config reloads by result.");
  readonly #auditWriteErrors = new CounterFamily(
    "mcpgw_audit_write_errors_total",
    "Failed writes to the audit log.",
  );
  readonly #rateLimited = new CounterFamily(
    "mcpgw_rate_limited_total",
    "Requests refused with 429 by a rate limit, by its id.",
  );
  readonly #tokenFetches = new CounterFamily(
    "mcpgw_upstream_token_fetches_total",
    "Token requests for upstream credentials (client_credentials), by route and result.",
  );
  readonly #storeErrors = new CounterFamily(
    "mcpgw_store_errors_total",
    "Commands to the shared store that failed or timed out (the request went on without it).",
  );
  #inFlight = 0;
  #streams = 0;
  #generation = 0;
  #restartPending = 0;
  #auditRecordsDropped = 0;

  constructor() {
    collectDefaultMetrics({ register: this.#runtime, prefix: "mcpgw_" });
    // Series exist at 0 from the start, so that rate() and alerts see the first increment.
    for (const result of ["ok", "failed"]) {
      this.#reloads.inc(result, () => ({ result }), 0);
      this.#jwksFetches.inc(result, () => ({ result }), 0);
    }
    for (const cache of ["api_key", "access_token"]) {
      for (const result of ["hit", "miss"])
        this.#cacheLookups.inc(cache + result, () => ({ cache, result }), 0);
    }
    this.#argon2Runs.inc("", () => ({}), 0);
    this.#auditWriteErrors.inc("", () => ({}), 0);
  }

  requestStarted(): void {
    this.#inFlight++;
  }

  /** Called once per request, with its finished audit record. */
  requestFinished(route: string, record: AuditRecord, durationSeconds: number): void {
    this.#inFlight--;
    const method = methodLabel(record.method);
    const { auth_type, auth_result, status } = record;
    // The label-building closures are only made for a series' first sample.
    const requestKey = `${route}\0${method}\0${auth_type}\0${auth_result}\0${status}`;
    this.#requests.inc(
      requestKey,
      this.#requests.has(requestKey)
        ? undefined
        : () => ({ route, method, auth_type, auth_result, status: String(status) }),
    );
    const durationKey = `${route}\0${method}`;
    this.#duration.observe(
      durationKey,
      this.#duration.has(durationKey) ? undefined : () => ({ route, method }),
      durationSeconds,
    );
  }

  upstreamResponded(route: string, seconds: number): void {
    this.#upstreamDuration.observe(
      route,
      this.#upstreamDuration.has(route) ? undefined : () => ({ route }),
      seconds,
    );
  }

  streamOpened(): void {
    this.#streams++;
  }

  streamClosed(): void {
    this.#streams--;
  }

  jwksFetched(ok: boolean): void {
    const result = ok ? "ok" : "failed";
    this.#jwksFetches.inc(result, () => ({ result }));
  }

  cacheLookup(cache: CredentialCache, hit: boolean): void {
    const result = hit ? "hit" : "miss";
    this.#cacheLookups.inc(cache + result, () => ({ cache, result }));
  }

  argon2Ran(): void {
    this.#argon2Runs.inc("", () => ({}));
  }

  reloaded(ok: boolean, generation?: number): void {
    const result = ok ? "ok" : "failed";
    this.#reloads.inc(result, () => ({ result }));
    if (generation !== undefined) this.#generation = generation;
  }

  /** Whether the file asks for settings that only a restart applies (see Gateway#reload). */
  restartPending(pending: boolean): void {
    this.#restartPending = pending ? 1 : 0;
  }

  /** Audit records that were never written: dropped from a full queue, or left at shutdown. */
  auditRecordsDropped(count: number): void {
    this.#auditRecordsDropped += count;
  }

  generationStarted(generation: number): void {
    this.#generation = generation;
  }

  /** A request refused by the rate limit `id`. */
  upstreamTokenFetch(route: string, result: string): void {
    this.#tokenFetches.inc(`${route} ${result}`, () => ({ route, result }));
  }

  storeError(store: string): void {
    this.#storeErrors.inc(store, () => ({ store }));
  }

  rateLimited(id: string): void {
    this.#rateLimited.inc(id, () => ({ limit: id }));
  }

  auditWriteFailed(): void {
    this.#auditWriteErrors.inc("", () => ({}));
  }

  /**
   * The Prometheus text exposition. `upstreams` is what each route's upstream reports now
   * (stdio sessions, pool targets' health), read at the scrape.
   */
  async exposition(
    upstreams: readonly { route: string; status: UpstreamStatus }[] = [],
  ): Promise<{ contentType: string; body: string }> {
    const lines: string[] = [];
    this.#requests.render(lines);
    this.#duration.render(lines);
    this.#upstreamDuration.render(lines);
    gauge(
      lines,
      "mcpgw_requests_in_flight",
      "Requests to the MCP endpoint being handled.",
      this.#inFlight,
    );
    gauge(
      lines,
      "mcpgw_sse_streams_open",
      "Server-sent event streams open to clients.",
      this.#streams,
    );
    this.#jwksFetches.render(lines);
    this.#cacheLookups.render(lines);
    this.#argon2Runs.render(lines);
    this.#reloads.render(lines);
    gauge(
      lines,
      "mcpgw_config_generation",
      "The config generation serving requests (1 at start, +1 per applied reload).",
      this.#generation,
    );
    gauge(
      lines,
      "mcpgw_config_restart_pending",
      "1 while the config file holds settings that only a restart applies (listen, metrics, telemetry, ...), else 0.",
      this.#restartPending,
    );
    this.#auditWriteErrors.render(lines);
    this.#rateLimited.render(lines);
    this.#storeErrors.render(lines);
    this.#tokenFetches.render(lines);
    renderUpstreams(lines, upstreams);
    lines.push(
      "# HELP mcpgw_audit_records_dropped_total Audit records never written: dropped while the queue was full, or left unwritten at shutdown.",
      "# TYPE mcpgw_audit_records_dropped_total counter",
      `mcpgw_audit_records_dropped_total ${this.#auditRecordsDropped}`,
    );
    return {
      contentType: this.#runtime.contentType,
      body: `${lines.join("\n")}\n${await this.#runtime.metrics()}`,
    };
  }
}

function renderUpstreams(
  lines: string[],
  upstreams: readonly { route: string; status: UpstreamStatus }[],
): void {
  const sessions = upstreams.filter(({ status }) => status.sessions !== undefined);
  if (sessions.length > 0) {
    lines.push(
      "# HELP mcpgw_upstream_sessions MCP sessions of stdio routes: one child process each.",
      "# TYPE mcpgw_upstream_sessions gauge",
      ...sessions.map(
        ({ route, status }) =>
          `mcpgw_upstream_sessions${formatLabels({ route })} ${status.sessions}`,
      ),
    );
  }
  const targets = upstreams.flatMap(({ route, status }) =>
    (status.targets ?? []).map(({ url, healthy }) => ({ route, target: url, healthy })),
  );
  if (targets.length > 0) {
    lines.push(
      "# HELP mcpgw_upstream_target_up 1 while a pool target passes its health check, else 0.",
      "# TYPE mcpgw_upstream_target_up gauge",
      ...targets.map(
        ({ route, target, healthy }) =>
          `mcpgw_upstream_target_up${formatLabels({ route, target })} ${healthy ? 1 : 0}`,
      ),
    );
  }
}

function gauge(lines: string[], name: string, help: string, value: number): void {
  lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${value}`);
}

function methodLabel(method: string | null): string {
  if (method === null) return "none";
  return KNOWN_METHODS.has(method) ? method : "other";
}
