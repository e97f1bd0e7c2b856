/**
 * OpenTelemetry traces: one SERVER span per request to the MCP endpoint, continuing the
 * caller's W3C trace context, with a CLIENT child span for the upstream call whose context goes
 * upstream in `traceparent`. Spans are batched and exported over OTLP/HTTP (protobuf or JSON).
 * Tracing never fails a request: an unreachable collector costs a log line per minute.
 * The gateway imports this module only when tracing is on: the SDK stays unloaded otherwise.
 */
import type { IncomingMessage } from "node:http";
import {
  type Context,
  context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import {
  type ExportResult,
  ExportResultCode,
  W3CTraceContextPropagator,
} from "@opentelemetry/core";
import { OTLPTraceExporter as JsonTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as ProtobufTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type ReadableSpan,
  type Sampler,
  type SpanExporter,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import type { AuditRecord } from "../audit/record.js";
import type { Logger } from "../log.js";
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
  #lastReport = 0;
  #unreported = 0;

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
    const now = Date.now();
    if (now - this.#lastReport < 60_000) {
      this.#unreported += spans;
      return;
    }
    this.#log.warn(
      { url: this.#url, err: error, dropped_spans: spans + this.#unreported },
      "tracing: span export failed (logged at most once a minute)",
    );
    this.#lastReport = now;
    this.#unreported = 0;
  }

  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.#inner.forceFlush?.() ?? Promise.resolve();
  }
}

const propagator = new W3CTraceContextPropagator();

export class Tracing {
  readonly settings: TracingSettings;
  readonly #provider: TracerProvider;
  readonly #tracer: Tracer;

  constructor(settings: TracingSettings, version: string, log: Logger) {
    this.settings = settings;
    const options = {
      url: settings.url,
      headers: settings.headers,
      timeoutMillis: settings.timeoutMs,
    };
    const exporter =
      settings.protocol === "http/json"
        ? new JsonTraceExporter(options)
        : new ProtobufTraceExporter(options);
    this.#provider = new TracerProvider({
      resource: resourceFromAttributes({
        "service.name": settings.serviceName,
        "service.version": version,
      }),
      sampler: samplerOf(settings.sampler, settings.samplerRatio, log),
      spanProcessors: [
        new BatchSpanProcessor({ exporter: new ReportingExporter(exporter, log, settings.url) }),
      ],
    });
    this.#tracer = this.#provider.getTracer("mcpgw", version);
  }

  /** Starts the SERVER span of a request, as a child of the caller's `traceparent` if any. */
  startRequest(req: IncomingMessage, route: string): RequestTrace {
    const parent = propagator.extract(ROOT_CONTEXT, req.headers, defaultTextMapGetter);
    const span = this.#tracer.startSpan(
      req.method ?? "POST",
      {
        kind: SpanKind.SERVER,
        attributes: { "http.request.method": req.method ?? "", "http.route": route },
      },
      parent,
    );
    return new RequestTrace(this.#tracer, span, trace.setSpan(parent, span));
  }

  forceFlush(): Promise<void> {
    return this.#provider.forceFlush();
  }

  /** Exports what is buffered and stops (on SIGTERM). */
  shutdown(): Promise<void> {
    return this.#provider.shutdown();
  }
}

export class RequestTrace {
  readonly #tracer: Tracer;
  readonly #span: Span;
  readonly #context: Context;
  #upstream: Span | undefined;

  constructor(tracer: Tracer, span: Span, spanContext: Context) {
    this.#tracer = tracer;
    this.#span = span;
    this.#context = spanContext;
  }

  get traceId(): string {
    return this.#span.spanContext().traceId;
  }

  /** Starts the CLIENT span of the upstream call; returns the headers that carry it upstream. */
  startUpstream(method: string, url: URL): Record<string, string> {
    const span = this.#tracer.startSpan(
      method,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          "http.request.method": method,
          "server.address": url.hostname,
          "server.port": Number(url.port || (url.protocol === "https:" ? 443 : 80)),
          "url.full": url.href,
        },
      },
      this.#context,
    );
    this.#upstream = span;
    const headers: Record<string, string> = {};
    propagator.inject(trace.setSpan(context.active(), span), headers, defaultTextMapSetter);
    return headers;
  }

  upstreamResponded(status: number): void {
    this.#upstream?.setAttribute("http.response.status_code", status);
    if (status >= 500) this.#upstream?.setStatus({ code: SpanStatusCode.ERROR });
  }

  /** Ends both spans with what the finished audit record says about the request. */
  finish(record: AuditRecord): void {
    const failed = record.action === "deny" || record.status >= 500 || record.error !== undefined;
    if (this.#upstream) {
      if (record.error?.startsWith("upstream")) {
        this.#upstream.setStatus({ code: SpanStatusCode.ERROR, message: record.error });
      }
      this.#upstream.end();
    }
    const span = this.#span;
    span.updateName(
      record.tool === undefined ? (record.method ?? "POST") : `${record.method} ${record.tool}`,
    );
    const attributes: Record<string, string | number> = {
      "mcp.auth.type": record.auth_type,
      "mcp.auth.result": record.auth_result,
      "http.response.status_code": record.status,
    };
    if (record.method !== null) attributes["mcp.method.name"] = record.method;
    if (record.session_id !== null) attributes["mcp.session.id"] = record.session_id;
    if (record.request_id !== null) attributes["jsonrpc.request.id"] = String(record.request_id);
    if (record.tool !== undefined) attributes["gen_ai.tool.name"] = record.tool;
    if (record.oauth_client_id !== undefined)
      attributes["mcp.auth.oauth_client_id"] = record.oauth_client_id;
    if (record.key_id !== undefined) attributes["mcp.auth.key_id"] = record.key_id;
    if (record.scopes !== undefined) attributes["mcp.auth.scopes"] = record.scopes;
    if (record.remote_addr !== null) attributes["client.address"] = record.remote_addr;
    span.setAttributes(attributes);
    if (failed) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: record.error ?? record.auth_result });
    }
    span.end();
  }
}
