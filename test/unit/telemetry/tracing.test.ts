import { describe, expect, it } from "vitest";
import { resolveTracing } from "../../../src/telemetry/tracing-settings.js";

/** The OpenTelemetry spec's batch span processor defaults. */
const DEFAULT_BATCH = {
  scheduledDelayMillis: 5000,
  exportTimeoutMillis: 30_000,
  maxQueueSize: 2048,
  maxExportBatchSize: 512,
};

describe("resolveTracing", () => {
  it("is off unless telemetry.enabled or an OTLP endpoint variable says otherwise", () => {
    expect(resolveTracing({}, {})).toBeUndefined();
    expect(
      resolveTracing({ enabled: false }, { OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" }),
    ).toBeUndefined();
    expect(resolveTracing({}, { OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" })?.url).toBe(
      "http://c:4318/v1/traces",
    );
    expect(
      resolveTracing({}, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c:4318/custom" })?.url,
    ).toBe("http://c:4318/custom");
  });

  it("lets config keys win over OTEL_* variables, which fill the unset ones", () => {
    const env = {
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://env:4318",
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_EXPORTER_OTLP_HEADERS: "x-api-key=s%3Dcret,tenant=acme",
      OTEL_SERVICE_NAME: "from-env",
      OTEL_TRACES_SAMPLER: "traceidratio",
      OTEL_TRACES_SAMPLER_ARG: "0.25",
    };
    expect(resolveTracing({ enabled: true }, env)).toEqual({
      serviceName: "from-env",
      url: "http://env:4318/v1/traces",
      protocol: "http/json",
      headers: { "x-api-key": "s=cret", tenant: "acme" },
      sampler: "traceidratio",
      samplerRatio: 0.25,
      timeoutMs: 10_000,
      batch: DEFAULT_BATCH,
      ignored: [],
    });
    expect(
      resolveTracing(
        {
          enabled: true,
          service_name: "gw",
          otlp_endpoint: "http://jaeger:4318/",
          protocol: "http/protobuf",
          headers: { authorization: "Bearer collector-token" },
          sampler: "always_on",
          sampler_ratio: 1,
        },
        env,
      ),
    ).toEqual({
      serviceName: "gw",
      url: "http://jaeger:4318/v1/traces",
      protocol: "http/protobuf",
      headers: { authorization: "Bearer collector-token" },
      sampler: "always_on",
      samplerRatio: 1,
      timeoutMs: 10_000,
      batch: DEFAULT_BATCH,
      ignored: [],
    });
  });

  it("defaults to protobuf, service mcpgw, parent-based always-on, localhost:4318", () => {
    expect(resolveTracing({ enabled: true }, {})).toEqual({
      serviceName: "mcpgw",
      url: "http://localhost:4318/v1/traces",
      protocol: "http/protobuf",
      headers: {},
      sampler: "parentbased_always_on",
      samplerRatio: 1,
      timeoutMs: 10_000,
      batch: DEFAULT_BATCH,
      ignored: [],
    });
  });

  it("takes the batch processor's tuning from OTEL_BSP_*, and names values it cannot use", () => {
    const settings = resolveTracing(
      { enabled: true },
      {
        OTEL_BSP_SCHEDULE_DELAY: "250",
        OTEL_BSP_EXPORT_TIMEOUT: "soon",
        OTEL_BSP_MAX_QUEUE_SIZE: "100",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "1000",
      },
    );
    expect(settings?.batch).toEqual({
      scheduledDelayMillis: 250,
      exportTimeoutMillis: 30_000,
      maxQueueSize: 100,
      // A batch is never larger than the queue it is taken from.
      maxExportBatchSize: 100,
    });
    expect(settings?.ignored).toEqual(["OTEL_BSP_EXPORT_TIMEOUT"]);
  });

  it("names the service from OTEL_RESOURCE_ATTRIBUTES when neither the config nor OTEL_SERVICE_NAME does", () => {
    const attributes = "deployment.environment.name=prod, service.name=mcp%20edge";
    const name = (config: { service_name?: string }, env: NodeJS.ProcessEnv) =>
      resolveTracing({ enabled: true, ...config }, env)?.serviceName;
    expect(name({}, { OTEL_RESOURCE_ATTRIBUTES: attributes })).toBe("mcp edge");
    expect(name({}, { OTEL_RESOURCE_ATTRIBUTES: attributes, OTEL_SERVICE_NAME: "svc" })).toBe(
      "svc",
    );
    expect(name({ service_name: "cfg" }, { OTEL_RESOURCE_ATTRIBUTES: attributes })).toBe("cfg");
    expect(name({}, { OTEL_RESOURCE_ATTRIBUTES: "team=platform" })).toBe("mcpgw");
  });

  it("names the sampler ratio and export timeout variables it cannot use, unless the config decides", () => {
    const bad = { OTEL_TRACES_SAMPLER_ARG: "1.5", OTEL_EXPORTER_OTLP_TIMEOUT: "ten" };
    const settings = resolveTracing({ enabled: true }, bad);
    expect(settings).toMatchObject({ samplerRatio: 1, timeoutMs: 10_000 });
    expect(settings?.ignored).toEqual(["OTEL_TRACES_SAMPLER_ARG", "OTEL_EXPORTER_OTLP_TIMEOUT"]);
    const configured = resolveTracing({ enabled: true, sampler_ratio: 0.5 }, bad);
    expect(configured?.samplerRatio).toBe(0.5);
    expect(configured?.ignored).toEqual(["OTEL_EXPORTER_OTLP_TIMEOUT"]);
    expect(resolveTracing({ enabled: true }, { OTEL_TRACES_SAMPLER_ARG: "0" })?.samplerRatio).toBe(
      0,
    );
  });

  it("stays off with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none, unless the config turns it on", () => {
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" };
    expect(resolveTracing({}, { ...endpoint, OTEL_SDK_DISABLED: "true" })).toBeUndefined();
    expect(resolveTracing({}, { ...endpoint, OTEL_TRACES_EXPORTER: "none" })).toBeUndefined();
    expect(resolveTracing({}, { ...endpoint, OTEL_SDK_DISABLED: "false" })).toBeDefined();
    expect(
      resolveTracing({ enabled: true }, { ...endpoint, OTEL_SDK_DISABLED: "true" }),
    ).toBeDefined();
  });
});
