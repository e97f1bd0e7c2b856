/**
 * The servers the benchmark drives. A target starts its processes, names the one whose CPU
 * time is charged to it, and on finish stops them and reports what it could only check
 * afterwards. A new scenario (JWT with a cold or warm JWKS cache, tracing on or off) is one
 * more TargetDefinition in the list bench/run.ts measures.
 */
import { execFile } from "node:child_process";
import { createReadStream, existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { type AddressInfo, connect, createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { stringify } from "yaml";
import { startTokenIssuer } from "./jwt.js";
import { BENCH_NODE } from "./node.js";
import { startOtlpSink } from "./otlp-sink.js";
import type { ExitStatus, ProcessGroup, ServiceProcess } from "./processes.js";
import { MCP_PATH, parsePortAnnouncement } from "./protocol.js";

export interface TargetContext {
  processes: ProcessGroup;
  /** An empty directory of this target's own, for configs and audit files. */
  scratchDir: string;
  /** The bearer token every client sends, whether or not the target checks it. */
  apiKey: string;
}

/** What the load generator did to a target, warm-up included. */
export interface Traffic {
  /** Requests written, including those cut off in flight when a phase ended. */
  sent: number;
  /** Responses received. */
  completed: number;
}

export interface Finding {
  check: string;
  /** Absent for info findings. */
  expected?: string;
  observed: string;
  ok: boolean;
  /**
   * A failed requirement means the run measured something broken and fails it; a missed
   * target is a result worth reporting; info is context for reading the numbers.
   */
  kind: "requirement" | "target" | "info";
}

export interface StartedTarget {
  /** Where the load generator sends its requests. */
  url: string;
  /** The Authorization header: a fixed value, or a function called for every request. */
  authorization?: string | (() => string);
  /** The process whose CPU time is charged to this target. */
  measured: ServiceProcess;
  /** Stops the target's processes, then checks what can only be checked once they are gone. */
  finish(traffic: Traffic): Promise<Finding[]>;
}

export interface TargetDefinition {
  name: string;
  description: string;
  /** Ratios of this target's numbers to another target's go into the report. */
  compareWith?: {
    baseline: string;
    /** The target for CPU per request relative to the baseline; none for a figure only reported. */
    maxCpuRatio?: number;
    /** Further baselines whose ratios are reported too, without a target. */
    alsoWith?: readonly string[];
  };
  /** Throws when something the target needs is missing, before any load is generated. */
  preflight?(): void;
  start(context: TargetContext): Promise<StartedTarget>;
}

const UPSTREAM_SCRIPT = new URL("./upstream.js", import.meta.url);
const PASSTHROUGH_SCRIPT = new URL("./passthrough.js", import.meta.url);
/** dist/bench/targets.js -> dist/src/main.js */
const MCPGW_MAIN = new URL("../src/main.js", import.meta.url);

export const READY_TIMEOUT_MS = 20_000;
/** The gateway waits up to shutdown_timeout (10 s) for in-flight requests; leave room. */
export const STOP_GRACE_MS = 15_000;

export interface RunningUpstream {
  process: ServiceProcess;
  url: string;
}

export async function startUpstream(processes: ProcessGroup): Promise<RunningUpstream> {
  const upstream = processes.spawnNode("upstream", UPSTREAM_SCRIPT);
  const port = await upstream.waitFor("port announcement", parsePortAnnouncement, READY_TIMEOUT_MS);
  return { process: upstream, url: `http://127.0.0.1:${port}${MCP_PATH}` };
}

async function stopAll(services: readonly ServiceProcess[]): Promise<void> {
  await Promise.all(services.map((service) => service.stop(STOP_GRACE_MS)));
}

/** The floor: the stand-in MCP server on its own, so its CPU is what the hop adds to. */
export const direct: TargetDefinition = {
  name: "direct",
  description: "clients talk to the stand-in upstream itself (CPU measured: the upstream)",
  async start({ processes }) {
    const upstream = await startUpstream(processes);
    return {
      url: upstream.url,
      measured: upstream.process,
      async finish() {
        await stopAll([upstream.process]);
        return [];
      },
    };
  },
};

function bareProxy(relay: "stream" | "dispatch"): TargetDefinition["start"] {
  return async ({ processes }) => {
    const upstream = await startUpstream(processes);
    const proxy = processes.spawnNode("passthrough", PASSTHROUGH_SCRIPT, [upstream.url, relay]);
    const port = await proxy.waitFor("port announcement", parsePortAnnouncement, READY_TIMEOUT_MS);
    return {
      url: `http://127.0.0.1:${port}${MCP_PATH}`,
      measured: proxy,
      async finish() {
        await stopAll([proxy, upstream.process]);
        return [];
      },
    };
  };
}

/** The baseline of every target. */
export const passthrough: TargetDefinition = {
  name: "passthrough",
  description:
    "bare undici Pool pass-through with pool.stream(): no auth, no audit (CPU measured: the proxy)",
  start: bareProxy("stream"),
};

/**
 * The same pass-through relaying responses through a dispatch handler, as mcpgw does: the
 * gateway's targets are also compared with it, so that the price of its features alone shows.
 */
export const passthroughDispatch: TargetDefinition = {
  name: "passthrough-dispatch",
  description:
    "the same pass-through relaying through a dispatch handler, as mcpgw does (CPU: the proxy)",
  compareWith: { baseline: passthrough.name },
  start: bareProxy("dispatch"),
};

const execFileAsync = promisify(execFile);

/** `mcpgw hash-key` reads the key on stdin, so it never shows up in a process listing. */
export async function hashKey(key: string): Promise<string> {
  const pending = execFileAsync(BENCH_NODE, [fileURLToPath(MCPGW_MAIN), "hash-key"], {
    timeout: 30_000,
  });
  pending.child.stdin?.end(key);
  const { stdout } = await pending;
  const hash = stdout.trim().split("\n").pop()?.trim() ?? "";
  if (!hash.startsWith("$argon2id$")) {
    throw new Error(`mcpgw hash-key printed ${JSON.stringify(stdout)}, not an argon2id hash`);
  }
  return hash;
}

/** A pino line of the gateway's stdout, when it is one. */
export function parseLogLine(line: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(line);
    return typeof parsed === "object" && parsed !== null
      ? (parsed as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** The URL of the gateway's "listening" line, when `line` is it. */
export function listeningUrl(line: string): string | undefined {
  const entry = parseLogLine(line);
  return entry?.msg === "listening" && typeof entry.url === "string" ? entry.url : undefined;
}

/** Lines that are not blank; streamed, since a soak's audit file outgrows a string. */
async function countLines(path: string): Promise<number> {
  let lines = 0;
  let content = false;
  try {
    for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
      let start = 0;
      while (start < chunk.length) {
        const newline = chunk.indexOf(0x0a, start);
        const end = newline === -1 ? chunk.length : newline;
        for (let at = start; !content && at < end; at++) {
          const byte = chunk[at];
          content = byte !== 0x20 && byte !== 0x09 && byte !== 0x0d;
        }
        if (newline === -1) break;
        if (content) lines++;
        content = false;
        start = newline + 1;
      }
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw error;
  }
  return content ? lines + 1 : lines;
}

/** What every gateway target checks once it has been stopped: a clean exit, a complete audit. */
export async function shutdownFindings(
  exit: ExitStatus,
  auditPath: string,
  traffic: Traffic,
): Promise<Finding[]> {
  const auditLines = await countLines(auditPath);
  return [
    {
      check: "exit on SIGTERM",
      expected: "code 0, audit flushed",
      observed: exit.signal === null ? `code ${exit.code}` : `killed by ${exit.signal}`,
      ok: exit.code === 0,
      kind: "requirement",
    },
    {
      // A request cut off in flight when a load phase stops may not have reached the gateway
      // whole, so only the answered ones are certain to be audited.
      check: "audit lines",
      expected: `${traffic.sent}, one per request sent; at least the ${traffic.completed} answered`,
      observed: String(auditLines),
      ok: auditLines >= traffic.completed && auditLines <= traffic.sent,
      kind: "requirement",
    },
  ];
}

/**
 * Writes a gateway config in front of `upstreamUrl` (listening on an ephemeral port, audit log
 * in the scratch directory, `extra` merged on top) and starts `mcpgw run` with it.
 */
export async function startGateway(
  processes: ProcessGroup,
  name: string,
  scratchDir: string,
  upstreamUrl: string,
  extra: Record<string, unknown>,
): Promise<{
  gateway: ServiceProcess;
  auditPath: string;
  /** The file it runs on, and what was written there, for a reload with a changed copy. */
  configPath: string;
  config: Record<string, unknown>;
}> {
  const auditPath = join(scratchDir, "audit.jsonl");
  const configPath = join(scratchDir, "mcpgw.yaml");
  const config = {
    listen: "127.0.0.1:0",
    upstream: { url: upstreamUrl, timeout: "60s" },
    audit: { path: auditPath },
    // The bench's token issuer serves its JWKS on loopback.
    outbound: { allowed_networks: ["127.0.0.1"] },
    ...extra,
  };
  await writeFile(configPath, stringify(config));
  const gateway = processes.spawnNode(name, MCPGW_MAIN, ["run", "--config", configPath]);
  return { gateway, auditPath, configPath, config };
}

interface GatewayScenario {
  name: string;
  description: string;
  /** Merged over the API-key config, e.g. `{ metrics: { enabled: false } }`. */
  extraConfig?: Record<string, unknown>;
  /**
   * Export spans to an OTLP/HTTP sink in the harness: every request's (always_on), or those of
   * the share of traces a `parentbased_traceidratio` sampler picks.
   */
  tracing?: { sampleRatio: number };
  /** The target for CPU per request relative to the baseline. Default 1.2. */
  maxCpuRatio?: number;
  /** What it is compared with. Default: the pass-through (and the dispatching one). */
  baseline?: string;
  /** `workers: N`; the CPU charged is the primary's and its workers'. Default 1. */
  workers?: number;
}

/**
 * A 50-rule policy (none of which matches, so every rule is tried) and one rate limit that never
 * runs out: what deciding costs. None of the rules names a tool the stand-in upstream lists, so
 * its tools/list answers pass unparsed.
 */
export const FIFTY_RULE_POLICY = {
  policy: {
    default: "allow",
    rules: Array.from({ length: 50 }, (_, index) => ({
      id: `rule-${index}`,
      match: { method: "tools/call", tool: `tool_${index}_*` },
      effect: "deny",
    })),
  },
  rate_limits: [{ id: "per-caller", key: "principal", rate: "1000000/s" }],
};

/**
 * The same, with a 51st rule that refuses one of the stand-in upstream's four tools: every
 * tools/list answer is parsed, filtered and written again.
 */
export const FIFTY_RULE_POLICY_FILTERING = {
  ...FIFTY_RULE_POLICY,
  policy: {
    ...FIFTY_RULE_POLICY.policy,
    rules: [
      ...FIFTY_RULE_POLICY.policy.rules,
      { id: "no-labels", match: { method: "tools/call", tool: "list_*" }, effect: "deny" },
    ],
  },
};

/**
 * mcpgw in front of the stand-in upstream with one API key (argon2id) and the audit log on:
 * the configuration most deployments run. Debug logging is on because the gateway logs each
 * argon2 verification at debug level, and that count shows whether verified keys are cached.
 */
export function mcpgwWithApiKey(scenario: GatewayScenario): TargetDefinition {
  return {
    name: scenario.name,
    description: scenario.description,
    compareWith: {
      baseline: scenario.baseline ?? passthrough.name,
      maxCpuRatio: scenario.maxCpuRatio ?? 1.2,
      alsoWith: scenario.baseline
        ? [passthrough.name, passthroughDispatch.name]
        : [passthroughDispatch.name],
    },
    preflight() {
      if (!existsSync(MCPGW_MAIN)) {
        throw new Error(
          `${fileURLToPath(MCPGW_MAIN)} does not exist: build the gateway first (npm run build)`,
        );
      }
    },
    async start({ processes, scratchDir, apiKey }) {
      const upstream = await startUpstream(processes);
      const sink = scenario.tracing ? await startOtlpSink() : undefined;
      const { gateway, auditPath } = await startGateway(
        processes,
        scenario.name,
        scratchDir,
        upstream.url,
        {
          auth: {
            enabled: true,
            keys: [{ id: "bench", hash: await hashKey(apiKey), scopes: ["*"] }],
          },
          log: { level: "debug" },
          ...(scenario.workers && { workers: scenario.workers }),
          ...(sink && {
            telemetry: {
              enabled: true,
              otlp_endpoint: sink.url,
              ...(scenario.tracing?.sampleRatio === 1
                ? { sampler: "always_on" }
                : {
                    sampler: "parentbased_traceidratio",
                    sampler_ratio: scenario.tracing?.sampleRatio,
                  }),
            },
          }),
          ...scenario.extraConfig,
        },
      );
      let logLines = 0;
      let argon2Runs = 0;
      gateway.onLine((line) => {
        logLines += 1;
        // Substring first: this runs on the harness, which shares the cores being measured.
        if (line.includes("argon2 verification")) {
          if (parseLogLine(line)?.msg === "argon2 verification") argon2Runs += 1;
        }
      });
      const url = await gateway.waitFor('"listening" log line', listeningUrl, READY_TIMEOUT_MS);

      return {
        url,
        measured: gateway,
        async finish(traffic) {
          // The gateway first, so the requests it still holds reach the upstream and the audit.
          const exit = await gateway.stop(STOP_GRACE_MS);
          await stopAll([upstream.process]);
          const exported = await sink?.close();
          return [
            ...(await shutdownFindings(exit, auditPath, traffic)),
            {
              check: "argon2 runs",
              expected:
                (scenario.workers ?? 1) === 1
                  ? "1: one key, verified once, then cached"
                  : `${scenario.workers}: one key, verified once per worker, then cached`,
              observed: String(argon2Runs),
              ok: argon2Runs === (scenario.workers ?? 1),
              kind: "target",
            },
            ...(exported === undefined || scenario.tracing === undefined
              ? []
              : [spansFinding(exported, scenario.tracing.sampleRatio, traffic)]),
            {
              // A log line per request would be part of the CPU measured; this shows there is none.
              check: "log lines on stdout",
              observed: `${logLines} for ${traffic.sent} requests`,
              ok: true,
              kind: "info",
            },
          ];
        },
      };
    },
  };
}

/**
 * A SERVER and a CLIENT span per sampled request; spans of requests cut off may be missing. A
 * ratio sampler picks trace ids at random, so its share is checked within a few percent.
 */
function spansFinding(exported: number, sampleRatio: number, traffic: Traffic): Finding {
  const expected = 2 * traffic.completed * sampleRatio;
  const ok =
    sampleRatio === 1
      ? exported >= expected * 0.99
      : exported >= expected * 0.9 && exported <= 2 * traffic.sent * sampleRatio * 1.1;
  return {
    check: "spans exported",
    expected:
      sampleRatio === 1
        ? `about 2 per request (${expected})`
        : `about 2 for ${sampleRatio * 100}% of requests (${Math.round(expected)})`,
    observed: String(exported),
    ok,
    kind: "requirement",
  };
}

interface JwtScenario {
  name: string;
  description: string;
  /** A new token for every request (each one a signature check), or one token throughout. */
  freshTokens: boolean;
  maxCpuRatio?: number;
  /** Further targets its ratios are reported against (the Node peers). */
  alsoWith?: readonly string[];
}

/**
 * mcpgw verifying ES256 JWT access tokens against a JWKS, audit log on. With one token the
 * verified-token cache answers after the first request (warm); with a new token per request
 * every one costs a signature check (cold).
 */
export function mcpgwWithJwt(scenario: JwtScenario): TargetDefinition {
  return {
    name: scenario.name,
    description: scenario.description,
    compareWith: {
      baseline: passthrough.name,
      ...(scenario.maxCpuRatio !== undefined && { maxCpuRatio: scenario.maxCpuRatio }),
      alsoWith: [passthroughDispatch.name, ...(scenario.alsoWith ?? [])],
    },
    async start({ processes, scratchDir }) {
      const upstream = await startUpstream(processes);
      const issuer = await startTokenIssuer();
      const { gateway, auditPath } = await startGateway(
        processes,
        scenario.name,
        scratchDir,
        upstream.url,
        { auth: { oauth: issuer.oauthConfig() } },
      );
      const url = await gateway.waitFor('"listening" log line', listeningUrl, READY_TIMEOUT_MS);
      const token = issuer.mint();
      return {
        url,
        measured: gateway,
        authorization: scenario.freshTokens ? () => `Bearer ${issuer.mint()}` : `Bearer ${token}`,
        async finish(traffic) {
          const exit = await gateway.stop(STOP_GRACE_MS);
          await stopAll([upstream.process]);
          await issuer.close();
          return shutdownFindings(exit, auditPath, traffic);
        },
      };
    },
  };
}

/**
 * What a Node engineer would build instead (bench/peers/): a proxy that verifies the same
 * ES256 JWT with jose on every request and writes one pino line per request, in front of the
 * same stand-in upstream, with the same warm token as `mcpgw-jwt-warm`.
 */
export function nodePeer(
  name: string,
  script: "fastify" | "express",
  description: string,
): TargetDefinition {
  return {
    name,
    description,
    compareWith: { baseline: passthrough.name },
    async start({ processes, scratchDir }) {
      const upstream = await startUpstream(processes);
      const issuer = await startTokenIssuer();
      const oauth = issuer.oauthConfig() as { jwks_url: string; issuer: string; audience: string };
      const peer = processes.spawnNode(name, new URL(`./peers/${script}.js`, import.meta.url), [
        upstream.url,
        oauth.jwks_url,
        oauth.issuer,
        oauth.audience,
        join(scratchDir, `${name}.log`),
      ]);
      const port = await peer.waitFor("port announcement", parsePortAnnouncement, READY_TIMEOUT_MS);
      return {
        url: `http://127.0.0.1:${port}${MCP_PATH}`,
        measured: peer,
        authorization: `Bearer ${issuer.mint()}`,
        async finish() {
          await stopAll([peer, upstream.process]);
          await issuer.close();
          return [];
        },
      };
    },
  };
}

/** Debian's `haproxy` package (2.6 in bookworm). */
const HAPROXY = "/usr/sbin/haproxy";

/**
 * The compiled anchor: HAProxy on one thread in front of the same upstream, verifying the same
 * ES256 token's signature with `jwt_verify` on every request (the alg must be ES256), dropping
 * `Authorization`, with keep-alive both ways and no logging.
 */
export const haproxyJwt: TargetDefinition = {
  name: "haproxy-jwt",
  description:
    "HAProxy 2.6, one thread, jwt_verify (ES256) on every request, no log (CPU: haproxy)",
  compareWith: { baseline: passthrough.name },
  preflight() {
    if (!existsSync(HAPROXY)) throw new Error(`${HAPROXY} is missing: apt-get install haproxy`);
  },
  async start({ processes, scratchDir }) {
    const upstream = await startUpstream(processes);
    const issuer = await startTokenIssuer();
    const keyFile = join(scratchDir, "jwt-public.pem");
    await writeFile(keyFile, issuer.publicKeyPem());
    const port = await unusedPort();
    const upstreamUrl = new URL(upstream.url);
    const config = join(scratchDir, "haproxy.cfg");
    await writeFile(
      config,
      [
        "global",
        "  nbthread 1",
        "defaults",
        "  mode http",
        "  option http-keep-alive",
        "  timeout connect 5s",
        "  timeout client 60s",
        "  timeout server 60s",
        "frontend mcp",
        `  bind 127.0.0.1:${port}`,
        "  http-request set-var(txn.bearer) http_auth_bearer",
        "  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')",
        '  http-request deny status 401 unless { var(txn.alg) -m str "ES256" }',
        `  http-request deny status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"${keyFile}") -m int 1 }`,
        "  http-request del-header authorization",
        "  default_backend upstream",
        "backend upstream",
        `  server up ${upstreamUrl.host}`,
        "",
      ].join("\n"),
    );
    const proxy = processes.spawn("haproxy-jwt", HAPROXY, ["-db", "-f", config]);
    await waitForPort(port, READY_TIMEOUT_MS);
    return {
      url: `http://127.0.0.1:${port}${MCP_PATH}`,
      measured: proxy,
      authorization: `Bearer ${issuer.mint()}`,
      async finish() {
        await stopAll([proxy, upstream.process]);
        await issuer.close();
        return [];
      },
    };
  },
};

/** A loopback port nothing listens on now. */
async function unusedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Resolves once something accepts connections on `port`. */
async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const connected = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (connected) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
}
