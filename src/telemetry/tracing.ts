/**
 * OpenTelemetry traces: one SERVER span per request to the MCP endpoint, continuing the
 * caller's W3C trace context, with a CLIENT child span for the upstream call whose context goes
 * upstream in `traceparent`. Spans are batched and exported over OTLP/HTTP (protobuf or JSON).
 * Tracing never fails a request: an unreachable collector costs a log line per minute.
 * The gateway imports this module only when tracing is on: the SDK stays unloaded otherwise.
 *
 * The SDK does the protocol work: parsing the caller's W3C trace context (`@opentelemetry/core`;
 * the one outgoing `traceparent` is written here, see startUpstream), sampling, batching
 * (`BatchSpanProcessor`, tuned by the `OTEL_BSP_*` variables, which tracing-settings reads:
 * this SDK takes them as options only) and OTLP export. The request's two spans, though, are
 * not SDK `Span` objects: the gateway knows every attribute only when the request ends (they
 * are the audit record's fields), so it keeps two ids and three timestamps while the request
 * runs and hands the batch processor two finished `ReadableSpan`s at the end. Measured under
 * load, a live SDK span pair cost about as much CPU as the whole rest of the request pipeline
 * (docs/benchmarks.md); these cost a fraction.
 */
import { randomFillSync } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { performance } from "node:perf_hooks";
import {
  type Attributes,
  type Context,
  DiagLogLevel,
  defaultTextMapGetter,
  diag,
  type HrTime,
  type Link,
  ROOT_CONTEXT,
  type SpanContext,
  SpanKind,
  type SpanStatus,
  SpanStatusCode,
  TraceFlags,
  trace,
} from "@opentelemetry/api";
import {
  type ExportResult,
  ExportResultCode,
  type InstrumentationScope,
  setGlobalErrorHandler,
  W3CTraceContextPropagator,
} from "@opentelemetry/core";
import { OTLPTraceExporter as JsonTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as ProtobufTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import {
  detectResources,
  envDetector,
  type Resource,
  resourceFromAttributes,
} from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type ReadableSpan,
  type Sampler,
  SamplingDecision,
  type SpanExporter,
  type TimedEvent,
  TraceIdRatioBasedSampler,
} from "@opentelemetry/sdk-trace";
import type { AuditRecord } from "../audit/record.js";
import type { Logger } from "../log.js";
import { DiagToLog } from "./diag-log.js";
import { RepeatLimiter } from "./repeat-limiter.js";
import type { TracingSettings } from "./tracing-settings.js";

function samplerOf(name: string, ratio: number, log: Logger): Sampler {
  switch (name) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return new TraceIdRatioBasedSampler(ratio);
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    default:
      log.warn({ sampler: name }, "tracing: unknown sampler, using parentbased_always_on");
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

/**
 * Reports failed exports without flooding the log: the first failure in a minute is logged,
 * the rest are counted into the next line.
 */
class ReportingExporter implements SpanExporter {
  readonly #inner: SpanExporter;
  readonly #log: Logger;
  readonly #url: string;
  readonly #limiter = new RepeatLimiter();

  constructor(inner: SpanExporter, log: Logger, url: string) {
    this.#inner = inner;
    this.#log = log;
    this.#url = url;
  }

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.#inner.export(spans, (result) => {
      if (result.code !== ExportResultCode.SUCCESS) this.#failed(result.error, spans.length);
      done(result);
    });
  }

  #failed(error: Error | undefined, spans: number): void {
    const unreported = this.#limiter.pass("export failed", spans);
    if (unreported === undefined) return;
    this.#log.warn(
      { url: this.#url, err: error, dropped_spans: spans + unreported },
      "tracing: span export failed (logged at most once a minute)",
    );
  }

  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.#inner.forceFlush?.() ?? Promise.resolve();
  }
}

/**
 * The OTLP exporters add the headers of OTEL_EXPORTER_OTLP_(TRACES_)HEADERS to the ones they
 * are given, where the contract has `telemetry.headers` replace them: otherwise a vendor's key
 * in the environment would travel to whatever collector the config names. `settings.headers`
 * already holds the variable's headers when the config sets none, so the exporter is built with
 * the two variables out of sight; it reads its environment only then, and they are put back.
 */
const HEADER_VARIABLES = ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"];

function withoutHeaderVariables<T>(construct: () => T): T {
  const saved = HEADER_VARIABLES.map((name) => [name, process.env[name]] as const);
  for (const name of HEADER_VARIABLES) delete process.env[name];
  try {
    return construct();
  } finally {
    for (const [name, value] of saved) if (value !== undefined) process.env[name] = value;
  }
}

const propagator = new W3CTraceContextPropagator();
const NO_LINKS: Link[] = [];
const NO_EVENTS: TimedEvent[] = [];
const UNSET: SpanStatus = { code: SpanStatusCode.UNSET };

/** What every span of this process shares. */
interface Origin {
  readonly resource: Resource;
  readonly scope: InstrumentationScope;
  readonly processor: BatchSpanProcessor;
  readonly sampler: Sampler;
}

export class Tracing {
  readonly settings: TracingSettings;
  readonly #origin: Origin;
  readonly #log: Logger;

  constructor(settings: TracingSettings, version: string, log: Logger) {
    this.settings = settings;
    this.#log = log;
    // Before the exporter exists, so that its complaints about OTEL_* variables are seen too.
    diag.setLogger(new DiagToLog(log), {
      logLevel: DiagLogLevel.WARN,
      suppressOverrideMessage: true,
    });
    // What reaches the SDK's global error handler from here is a batch that was not exported:
    // ReportingExporter below already reports each failed export, so these stay at debug.
    setGlobalErrorHandler((error) => log.debug({ err: error }, "tracing: span batch not exported"));
    const options = {
      url: settings.url,
      headers: settings.headers,
      timeoutMillis: settings.timeoutMs,
    };
    const exporter = withoutHeaderVariables(() =>
      settings.protocol === "http/json"
        ? new JsonTraceExporter(options)
        : new ProtobufTraceExporter(options),
    );
    this.#origin = {
      // OTEL_RESOURCE_ATTRIBUTES (deployment.environment.name=prod,...) first; the service's
      // name and version on top, so that telemetry.service_name wins over OTEL_SERVICE_NAME.
      resource: detectResources({ detectors: [envDetector] }).merge(
        resourceFromAttributes({
          "service.name": settings.serviceName,
          "service.version": version,
        }),
      ),
      scope: { name: "mcpgw", version },
      processor: new BatchSpanProcessor({
        exporter: new ReportingExporter(exporter, log, settings.url),
        ...settings.batch,
      }),
      sampler: samplerOf(settings.sampler, settings.samplerRatio, log),
    };
    if (settings.ignored.length > 0) {
      log.warn(
        { variables: settings.ignored },
        "tracing: OTEL_* values that cannot be used are ignored; their defaults apply",
      );
    }
  }

  /** Starts the SERVER span of a request, as a child of the caller's `traceparent` if any. */
  startRequest(req: IncomingMessage, route: string | undefined): RequestTrace {
    const startedAt = performance.now();
    const method = req.method ?? "";
    // OTel semantic conventions: http.route only for a request that matched a route.
    const attributes: Attributes =
      route === undefined
        ? { "http.request.method": method }
        : { "http.request.method": method, "http.route": route };
    const ids = nextIds();
    const [context, parent] = spanContextOf(
      this.#origin.sampler,
      req.headers.traceparent === undefined ? undefined : req.headers,
      nonZero(ids.slice(0, 32)),
      nonZero(ids.slice(32, 48)),
      method || "POST",
      attributes,
    );
    return new RequestTrace(
      this.#origin,
      context,
      parent,
      attributes,
      startedAt,
      nonZero(ids.slice(48, 64)),
    );
  }

  forceFlush(): Promise<void> {
    return this.#origin.processor.forceFlush();
  }

  /** Exports what is buffered and stops. */
  shutdown(): Promise<void> {
    return this.#origin.processor.shutdown();
  }

  /**
   * Exports the spans still buffered and stops, waiting at most 5 seconds: a collector that is
   * down must not hold a reload's cleanup or the exit until systemd's stop timeout. Called when
   * the last generation using these settings has closed (a reload that changed them, or
   * SIGTERM), after its last request ended: the spans of every request it served are exported.
   */
  async close(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), CLOSE_TIMEOUT_MS);
    });
    const outcome = await Promise.race([this.shutdown().then(() => "flushed" as const), gaveUp])
      .catch((error: unknown) => {
        this.#log.warn({ err: error, url: this.settings.url }, "tracing: flushing spans failed");
        return "failed" as const;
      })
      .finally(() => clearTimeout(timer));
    if (outcome === "timeout") {
      this.#log.warn(
        { url: this.settings.url },
        `tracing: gave up flushing spans after ${CLOSE_TIMEOUT_MS / 1000}s`,
      );
    }
  }
}

/** How long closing waits for the last spans to be exported. */
const CLOSE_TIMEOUT_MS = 5_000;

/**
 * The SERVER span's context: in the trace of `carrier` (W3C trace context headers, or the same
 * fields from a message's `_meta`) when it holds a valid one, else in a new trace; sampled as
 * the sampler decides.
 */
function spanContextOf(
  sampler: Sampler,
  carrier: Record<string, unknown> | undefined,
  newTraceId: string,
  spanId: string,
  name: string,
  attributes: Attributes,
): [SpanContext, SpanContext | undefined] {
  let parentContext: Context = ROOT_CONTEXT;
  let parent: SpanContext | undefined;
  if (carrier !== undefined) {
    parentContext = propagator.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter);
    parent = trace.getSpanContext(parentContext);
  }
  const traceId = parent?.traceId ?? newTraceId;
  const sampling = sampler.shouldSample(
    parentContext,
    traceId,
    name,
    SpanKind.SERVER,
    attributes,
    NO_LINKS,
  );
  const traceState = sampling.traceState ?? parent?.traceState;
  if (sampling.attributes) Object.assign(attributes, sampling.attributes);
  const context: SpanContext = {
    traceId,
    spanId,
    traceFlags:
      sampling.decision === SamplingDecision.RECORD_AND_SAMPLED
        ? TraceFlags.SAMPLED
        : TraceFlags.NONE,
    ...(traceState && { traceState }),
  };
  return [context, parent];
}

/** The spans of one request while it runs; they are created whole when it ends. */
export class RequestTrace {
  readonly #origin: Origin;
  #context: SpanContext;
  #parent: SpanContext | undefined;
  readonly #attributes: Attributes;
  readonly #startedAt: number;
  readonly #upstreamSpanId: string;
  #upstream: { context: SpanContext; attributes: Attributes; startedAt: number } | undefined;

  constructor(
    origin: Origin,
    context: SpanContext,
    parent: SpanContext | undefined,
    attributes: Attributes,
    startedAt: number,
    upstreamSpanId: string,
  ) {
    this.#origin = origin;
    this.#context = context;
    this.#parent = parent;
    this.#attributes = attributes;
    this.#startedAt = startedAt;
    this.#upstreamSpanId = upstreamSpanId;
  }

  get #sampled(): boolean {
    return (this.#context.traceFlags & TraceFlags.SAMPLED) !== 0;
  }

  get traceId(): string {
    return this.#context.traceId;
  }

  /**
   * A 2026-07-28 message may carry its trace context in `params._meta` (SEP-414): when no
   * `traceparent` header came, the request joins that trace instead of the one it started.
   * Called before the upstream span starts. Returns whether the trace changed.
   */
  continueFrom(meta: { traceparent: string; tracestate?: string | undefined }): boolean {
    if (this.#parent !== undefined || this.#upstream !== undefined) return false;
    const carrier: Record<string, string> = { traceparent: meta.traceparent };
    if (meta.tracestate !== undefined) carrier.tracestate = meta.tracestate;
    const [context, parent] = spanContextOf(
      this.#origin.sampler,
      carrier,
      this.#context.traceId,
      this.#context.spanId,
      String(this.#attributes["http.request.method"] ?? "POST"),
      this.#attributes,
    );
    if (parent === undefined) return false;
    this.#context = context;
    this.#parent = parent;
    return true;
  }

  /**
   * Starts the CLIENT span of the upstream call; returns the W3C trace context that carries it
   * upstream. An unsampled request sends its context too (flag 00), so that the upstream
   * follows the caller's decision, but records nothing.
   */
  startUpstream(method: string, url: URL): TraceContextHeaders {
    const { traceId, traceFlags, traceState } = this.#context;
    const spanId = this.#upstreamSpanId;
    if (this.#sampled) {
      this.#upstream = {
        context: { ...this.#context, spanId },
        startedAt: performance.now(),
        attributes: upstreamAttributes(method, url),
      };
    }
    // W3C Trace Context §3.2: version 00, trace id, parent id, flags. The gateway only ever sets
    // the sampled flag, and both ids come from nextIds(), always valid: the propagator's
    // validation and context objects would add nothing here, and this runs on every request.
    const traceparent = `00-${traceId}-${spanId}-${traceFlags & TraceFlags.SAMPLED ? "01" : "00"}`;
    return traceState ? { traceparent, tracestate: traceState.serialize() } : { traceparent };
  }

  upstreamResponded(status: number): void {
    if (this.#upstream) this.#upstream.attributes["http.response.status_code"] = status;
  }

  /** Ends both spans with what the finished audit record says about the request. */
  finish(record: AuditRecord): void {
    if (!this.#sampled) return;
    const endedAt = performance.now();
    const { processor } = this.#origin;
    const upstream = this.#upstream;
    if (upstream) {
      const status = upstream.attributes["http.response.status_code"];
      processor.onEnd(
        new FinishedSpan(this.#origin, {
          name: String(upstream.attributes["http.request.method"]),
          kind: SpanKind.CLIENT,
          context: upstream.context,
          parent: this.#context,
          attributes: upstream.attributes,
          status: record.error?.startsWith("upstream")
            ? { code: SpanStatusCode.ERROR, message: record.error }
            : typeof status === "number" && status >= 500
              ? { code: SpanStatusCode.ERROR }
              : UNSET,
          startedAt: upstream.startedAt,
          endedAt,
        }),
      );
    }
    const attributes = this.#attributes;
    attributes["mcp.auth.type"] = record.auth_type;
    attributes["mcp.auth.result"] = record.auth_result;
    attributes["http.response.status_code"] = record.status;
    attributes["mcpgw.request.id"] = record.gateway_request_id;
    if (record.method !== null) attributes["mcp.method.name"] = record.method;
    if (record.session_id !== null) attributes["mcp.session.id"] = record.session_id;
    if (record.request_id !== null) attributes["jsonrpc.request.id"] = String(record.request_id);
    if (record.tool !== undefined) attributes["gen_ai.tool.name"] = record.tool;
    if (record.prompt !== undefined) attributes["gen_ai.prompt.name"] = record.prompt;
    if (record.resource !== undefined) attributes["mcp.resource.uri"] = record.resource;
    if (record.oauth_client_id !== undefined)
      attributes["mcp.auth.oauth_client_id"] = record.oauth_client_id;
    if (record.key_id !== undefined) attributes["mcp.auth.key_id"] = record.key_id;
    if (record.scopes !== undefined) attributes["mcp.auth.scopes"] = record.scopes;
    if (record.remote_addr !== null) attributes["client.address"] = record.remote_addr;
    if (record.rule !== undefined) attributes["mcpgw.policy.rule"] = record.rule;
    if (record.protocol_version !== undefined) {
      attributes["mcp.protocol.version"] = record.protocol_version;
    }
    const failed = record.action === "deny" || record.status >= 500 || record.error !== undefined;
    processor.onEnd(
      new FinishedSpan(this.#origin, {
        name:
          record.tool === undefined ? (record.method ?? "POST") : `${record.method} ${record.tool}`,
        kind: SpanKind.SERVER,
        context: this.#context,
        parent: this.#parent,
        attributes,
        status: failed
          ? { code: SpanStatusCode.ERROR, message: record.error ?? record.auth_result }
          : UNSET,
        startedAt: this.#startedAt,
        endedAt,
      }),
    );
  }
}

/** The headers that carry the upstream span's context (W3C Trace Context). */
export interface TraceContextHeaders {
  traceparent: string;
  tracestate?: string;
}

/**
 * Random ids for one request, as 64 hex digits: a trace id (32) and the SERVER and CLIENT span
 * ids (16 each). They are cut from a buffer refilled from the CSPRNG every 128 requests: one
 * hex encoding per request, where generating the three ids one by one cost three.
 */
const ID_BYTES = 32;
const idBuffer = Buffer.allocUnsafe(ID_BYTES * 128);
let idOffset = idBuffer.length;

function nextIds(): string {
  if (idOffset === idBuffer.length) {
    randomFillSync(idBuffer);
    idOffset = 0;
  }
  const ids = idBuffer.toString("hex", idOffset, idOffset + ID_BYTES);
  idOffset += ID_BYTES;
  return ids;
}

/** W3C Trace Context: an id of all zeros is invalid. Random ids are, once in 2^64 at most. */
function nonZero(id: string): string {
  return id.charCodeAt(0) === 48 && /^0+$/.test(id) ? `${id.slice(0, -1)}1` : id;
}

/**
 * The CLIENT span's attributes. The parts from the upstream URL are read once per URL, that is
 * once per config generation, whose `Upstream` keeps its URL object.
 */
const urlParts = new WeakMap<URL, { address: string; port: number; full: string }>();

function upstreamAttributes(method: string, url: URL): Attributes {
  let parts = urlParts.get(url);
  if (parts === undefined) {
    parts = {
      address: url.hostname,
      port: Number(url.port || (url.protocol === "https:" ? 443 : 80)),
      full: url.href,
    };
    urlParts.set(url, parts);
  }
  // A stdio upstream (`stdio:<program>`) is a child process, not a server address.
  if (url.protocol === "stdio:") {
    return { "http.request.method": method, "process.executable.name": url.pathname };
  }
  return {
    "http.request.method": method,
    "server.address": parts.address,
    "server.port": parts.port,
    "url.full": parts.full,
  };
}

interface SpanFields {
  name: string;
  kind: SpanKind;
  context: SpanContext;
  parent: SpanContext | undefined;
  attributes: Attributes;
  status: SpanStatus;
  /** `performance.now()` readings. */
  startedAt: number;
  endedAt: number;
}

/** A span that has ended, as the batch processor and the OTLP exporters read it. */
class FinishedSpan implements ReadableSpan {
  readonly name: string;
  readonly kind: SpanKind;
  readonly parentSpanContext: SpanContext | undefined;
  readonly startTime: HrTime;
  readonly endTime: HrTime;
  readonly duration: HrTime;
  readonly status: SpanStatus;
  readonly attributes: Attributes;
  readonly links = NO_LINKS;
  readonly events = NO_EVENTS;
  readonly ended = true;
  readonly resource: Resource;
  readonly instrumentationScope: InstrumentationScope;
  readonly droppedAttributesCount = 0;
  readonly droppedEventsCount = 0;
  readonly droppedLinksCount = 0;
  readonly #context: SpanContext;

  constructor(origin: Origin, fields: SpanFields) {
    this.name = fields.name;
    this.kind = fields.kind;
    this.#context = fields.context;
    this.parentSpanContext = fields.parent;
    this.startTime = wallClock(fields.startedAt);
    this.endTime = wallClock(fields.endedAt);
    this.duration = hrDuration(fields.endedAt - fields.startedAt);
    this.status = fields.status;
    this.attributes = fields.attributes;
    this.resource = origin.resource;
    this.instrumentationScope = origin.scope;
  }

  spanContext(): SpanContext {
    return this.#context;
  }
}

// The wall-clock time of a performance.now() reading, split so that no precision is lost
// adding milliseconds since the epoch (about 1.8e12) to a sub-microsecond reading.
const ORIGIN_SECONDS = Math.floor(performance.timeOrigin / 1000);
const ORIGIN_MS = performance.timeOrigin - ORIGIN_SECONDS * 1000;

function wallClock(reading: number): HrTime {
  const ms = ORIGIN_MS + reading;
  const seconds = Math.floor(ms / 1000);
  return [ORIGIN_SECONDS + seconds, Math.min(Math.round((ms - seconds * 1000) * 1e6), 999_999_999)];
}

function hrDuration(ms: number): HrTime {
  const seconds = Math.floor(ms / 1000);
  return [seconds, Math.min(Math.round((ms - seconds * 1000) * 1e6), 999_999_999)];
}
