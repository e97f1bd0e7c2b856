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
}

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
  const enabled = config.enabled ?? (tracesEndpoint !== undefined || baseEndpoint !== undefined);
  if (!enabled) return undefined;
  const url =
    config.otlp_endpoint !== undefined
      ? tracesUrl(config.otlp_endpoint)
      : (tracesEndpoint ?? tracesUrl(baseEndpoint ?? "http://localhost:4318"));
  const envProtocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || env.OTEL_EXPORTER_OTLP_PROTOCOL;
  const protocol: OtlpProtocol =
    config.protocol ?? (envProtocol === "http/json" ? "http/json" : "http/protobuf");
  const headerText = env.OTEL_EXPORTER_OTLP_TRACES_HEADERS || env.OTEL_EXPORTER_OTLP_HEADERS;
  const ratio = Number(env.OTEL_TRACES_SAMPLER_ARG);
  const timeout = Number(env.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT || env.OTEL_EXPORTER_OTLP_TIMEOUT);
  return {
    serviceName: config.service_name ?? (env.OTEL_SERVICE_NAME || "mcpgw"),
    url,
    protocol,
    headers: config.headers ?? parseHeaderList(headerText),
    sampler: config.sampler ?? (env.OTEL_TRACES_SAMPLER || "parentbased_always_on"),
    samplerRatio:
      config.sampler_ratio ?? (Number.isFinite(ratio) && env.OTEL_TRACES_SAMPLER_ARG ? ratio : 1),
    timeoutMs: Number.isFinite(timeout) && timeout > 0 ? timeout : 10_000,
  };
}

function tracesUrl(base: string): string {
  return `${base.replace(/\/+$/, "")}/v1/traces`;
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
