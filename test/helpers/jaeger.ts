/**
 * A real Jaeger v2 (the OpenTelemetry Collector based binary, built by test/tools/build.sh) for
 * a test file, run on the configuration operators get (deploy/jaeger/config.yaml): OTLP/HTTP in,
 * traces kept in memory, the query API that Jaeger's UI reads, each on a free loopback port. Stopped and started again on the same ports, empty, to test what the
 * gateway does while the collector is away.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { vi } from "vitest";
import { freePort } from "./fake-upstreams.js";
import { toolPath } from "./tools.js";

const CONFIG = path.resolve(import.meta.dirname, "../../deploy/jaeger/config.yaml");

/** A span as Jaeger's query API (`/api/traces`) returns it. */
export interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: { refType: string; traceID: string; spanID: string }[];
  tags: { key: string; type: string; value: unknown }[];
  processID: string;
}

export interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string; tags: { key: string; value: unknown }[] }>;
}

export interface TestJaeger {
  /** Where the gateway sends spans: `telemetry.otlp_endpoint`. */
  otlpEndpoint: string;
  /** The query API's base URL (Jaeger's UI is served there too). */
  queryUrl: string;
  /** `/api/services`. */
  services(): Promise<string[]>;
  /** `/api/traces?service=...` (the query API's default look-back, one hour). */
  traces(service: string, limit?: number): Promise<JaegerTrace[]>;
  /** `/api/traces/<id>`, or undefined while Jaeger does not have it. */
  trace(traceId: string): Promise<JaegerTrace | undefined>;
  /** Waits until Jaeger holds trace `traceId` with at least `spans` spans. */
  waitForTrace(traceId: string, spans?: number): Promise<JaegerTrace>;
  /** Kills it (its traces are lost). */
  stop(): Promise<void>;
  /** Starts it again on the same ports, empty. */
  start(): Promise<void>;
}

/** A span's tags as an object. */
export function tagsOf(span: JaegerSpan): Record<string, unknown> {
  return Object.fromEntries(span.tags.map((tag) => [tag.key, tag.value]));
}

export async function startJaeger(): Promise<TestJaeger> {
  const binary = toolPath("jaeger");
  const ports = {
    otlp: await freePort(),
    query: await freePort(),
    queryGrpc: await freePort(),
    health: await freePort(),
  };
  const queryUrl = `http://127.0.0.1:${ports.query}`;
  const health = `http://127.0.0.1:${ports.health}/status`;
  let child: ChildProcess | undefined;

  const launch = async () => {
    // The operator's configuration (deploy/jaeger/config.yaml: OTLP/HTTP in, memory storage,
    // the query API, a health check), on free ports, so that test files run in parallel.
    const started = spawn(binary, ["--config", `file:${CONFIG}`], {
      stdio: ["ignore", "ignore", "pipe"],
      env: {
        ...process.env,
        JAEGER_LISTEN_HOST: "127.0.0.1",
        JAEGER_OTLP_HTTP_PORT: String(ports.otlp),
        JAEGER_QUERY_HTTP_PORT: String(ports.query),
        JAEGER_QUERY_GRPC_PORT: String(ports.queryGrpc),
        JAEGER_HEALTH_PORT: String(ports.health),
      },
    });
    let output = "";
    started.stderr?.on("data", (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-4000);
    });
    const exited = once(started, "exit").then(([code]) => {
      throw new Error(`jaeger exited (${code}) while starting: ${output}`);
    });
    const ready = vi.waitFor(
      async () => {
        const res = await fetch(health);
        if (!res.ok) throw new Error(`jaeger not ready: ${res.status}`);
      },
      { timeout: 20_000, interval: 50 },
    );
    await Promise.race([ready, exited]);
    exited.catch(() => {});
    child = started;
  };

  const get = async <T>(pathAndQuery: string): Promise<{ status: number; body: T }> => {
    const res = await fetch(`${queryUrl}${pathAndQuery}`);
    return { status: res.status, body: (await res.json()) as T };
  };

  const jaeger: TestJaeger = {
    otlpEndpoint: `http://127.0.0.1:${ports.otlp}`,
    queryUrl,
    async services() {
      return (await get<{ data: string[] | null }>("/api/services")).body.data ?? [];
    },
    async traces(service, limit = 1000) {
      const query = new URLSearchParams({ service, limit: String(limit), lookback: "1h" });
      return (await get<{ data: JaegerTrace[] | null }>(`/api/traces?${query}`)).body.data ?? [];
    },
    async trace(traceId) {
      const { status, body } = await get<{ data: JaegerTrace[] | null }>(`/api/traces/${traceId}`);
      return status === 200 ? body.data?.[0] : undefined;
    },
    waitForTrace(traceId, spans = 1) {
      return vi.waitFor(
        async () => {
          const found = await jaeger.trace(traceId);
          if (!found || found.spans.length < spans) {
            throw new Error(`Jaeger has ${found?.spans.length ?? 0} spans of ${traceId}`);
          }
          return found;
        },
        { timeout: 15_000, interval: 100 },
      );
    },
    async stop() {
      const running = child;
      child = undefined;
      if (!running || running.exitCode !== null) return;
      const exited = once(running, "exit");
      // Its traces are in memory and die with it anyway; a graceful stop waits up to 10 s for
      // the query API's idle keep-alive connections.
      running.kill("SIGKILL");
      await exited;
    },
    async start() {
      if (child === undefined) await launch();
    },
  };
  await launch();
  return jaeger;
}
