/**
 * Which traces to export and where, from the config and the standard OTEL_* variables. Kept
 * apart from the OpenTelemetry SDK so that deciding costs no SDK load when tracing is off.
 */
import type { Config } from "../config/schema.js";

export type OtlpProtocol = "http/protobuf" | "http/json";

export interface TracingSettings {
  serviceName: string;
  /** The full OTLP/HTTP traces URL. */
  url: string;
  protocol: OtlpProtocol;
  headers: Record<string, string>;
  sampler: string;
  samplerRatio: number;
  /** Bound on one export, retries included (OTEL_EXPORTER_OTLP_TIMEOUT, default 10s). */
  timeoutMs: number;
  /** The batch span processor's tuning, from the OTEL_BSP_* variables. */
  batch: BatchSettings;
  /** OTEL_* variables set to values that cannot be used, and so left at their defaults. */
  ignored: string[];
}

/** The OpenTelemetry spec's batch span processor settings; the defaults are the spec's. */
export interface BatchSettings {
  /** OTEL_BSP_SCHEDULE_DELAY: the most a span waits for its batch (ms). */
  scheduledDelayMillis: number;
  /** OTEL_BSP_EXPORT_TIMEOUT: the most one batch's export may take (ms). */
  exportTimeoutMillis: number;
  /** OTEL_BSP_MAX_QUEUE_SIZE: spans held for export; beyond it, new spans are dropped. */
  maxQueueSize: number;
  /** OTEL_BSP_MAX_EXPORT_BATCH_SIZE: spans per export; a full batch is sent at once. */
  maxExportBatchSize: number;
}

const BATCH_VARIABLES = {
  scheduledDelayMillis: ["OTEL_BSP_SCHEDULE_DELAY", 5000],
  exportTimeoutMillis: ["OTEL_BSP_EXPORT_TIMEOUT", 30_000],
  maxQueueSize: ["OTEL_BSP_MAX_QUEUE_SIZE", 2048],
  maxExportBatchSize: ["OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512],
} as const satisfies Record<keyof BatchSettings, readonly [string, number]>;

/**
 * Resolves the tracing settings: a key set in the config wins over the matching OTEL_*
 * variable; an unset key falls back to it (contract: Traces). Undefined when tracing is off.
 */
export function resolveTracing(
  config: Config["telemetry"],
  env: NodeJS.ProcessEnv = process.env,
): TracingSettings | undefined {
  const tracesEndpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || undefined;
  const baseEndpoint = env.OTEL_EXPORTER_OTLP_ENDPOINT || undefined;
  // With telemetry.enabled unset, an endpoint variable turns tracing on (contract: Traces),
  // unless the environment turns OpenTelemetry off the standard ways.
  const switchedOff =
    env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true" ||
    env.OTEL_TRACES_EXPORTER?.trim().toLowerCase() === "none";
  const enabled =
    config.enabled ??
    (!switchedOff && (tracesEndpoint !== undefined || baseEndpoint !== undefined));
  if (!enabled) return undefined;
  const url =
    config.otlp_endpoint !== undefined
      ? tracesUrl(config.otlp_endpoint)
      : (tracesEndpoint ?? tracesUrl(baseEndpoint ?? "http://localhost:4318"));
  const envProtocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || env.OTEL_EXPORTER_OTLP_PROTOCOL;
  const protocol: OtlpProtocol =
    config.protocol ?? (envProtocol === "http/json" ? "http/json" : "http/protobuf");
  const headerText = env.OTEL_EXPORTER_OTLP_TRACES_HEADERS || env.OTEL_EXPORTER_OTLP_HEADERS;
  const ignored: string[] = [];
  const ratioText = env.OTEL_TRACES_SAMPLER_ARG;
  const ratio = Number(ratioText);
  const ratioUsable = Number.isFinite(ratio) && ratio >= 0 && ratio <= 1;
  if (ratioText && !ratioUsable && config.sampler_ratio === undefined) {
    ignored.push("OTEL_TRACES_SAMPLER_ARG");
  }
  const timeoutName = env.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT
    ? "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"
    : "OTEL_EXPORTER_OTLP_TIMEOUT";
  const timeoutText = env[timeoutName];
  const timeout = Number(timeoutText);
  const timeoutUsable = Number.isFinite(timeout) && timeout > 0;
  if (timeoutText && !timeoutUsable) ignored.push(timeoutName);
  // The SDK's BatchSpanProcessor takes these as options only; it reads no variable itself.
  const batch = {} as BatchSettings;
  for (const [key, [name, fallback]] of Object.entries(BATCH_VARIABLES)) {
    const text = env[name];
    const value = Number(text);
    const usable = Number.isInteger(value) && value > 0;
    if (text && !usable) ignored.push(name);
    batch[key as keyof BatchSettings] = text && usable ? value : fallback;
  }
  if (batch.maxExportBatchSize > batch.maxQueueSize) {
    // As the spec has it: a batch cannot be larger than the queue it is taken from.
    batch.maxExportBatchSize = batch.maxQueueSize;
  }
  return {
    serviceName:
      config.service_name ??
      (env.OTEL_SERVICE_NAME || resourceServiceName(env.OTEL_RESOURCE_ATTRIBUTES) || "mcpgw"),
    url,
    protocol,
    headers: config.headers ?? parseHeaderList(headerText),
    sampler: config.sampler ?? (env.OTEL_TRACES_SAMPLER || "parentbased_always_on"),
    samplerRatio: config.sampler_ratio ?? (ratioText && ratioUsable ? ratio : 1),
    timeoutMs: timeoutText && timeoutUsable ? timeout : 10_000,
    batch,
    ignored,
  };
}

function tracesUrl(base: string): string {
  return `${base.replace(/\/+$/, "")}/v1/traces`;
}

/**
 * `service.name` in OTEL_RESOURCE_ATTRIBUTES (`key=value,...`, values percent-encoded), which
 * the spec ranks below OTEL_SERVICE_NAME. The other attributes are the SDK's to read.
 */
function resourceServiceName(text: string | undefined): string | undefined {
  const entry = text
    ?.split(",")
    .map((pair) => pair.trim())
    .find((pair) => pair.startsWith("service.name="));
  if (entry === undefined) return undefined;
  try {
    return decodeURIComponent(entry.slice("service.name=".length).trim()) || undefined;
  } catch {
    return undefined;
  }
}

/** OTEL_EXPORTER_OTLP_HEADERS: `key=value,key2=value2`, values percent-encoded. */
function parseHeaderList(text: string | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const pair of (text ?? "").split(",")) {
    const at = pair.indexOf("=");
    if (at <= 0) continue;
    headers[pair.slice(0, at).trim()] = decodeURIComponent(pair.slice(at + 1).trim());
  }
  return headers;
}
