/**
 * `npm run bench`: measures each target in turn (the stand-in upstream on its own, a bare
 * undici pass-through, mcpgw with API-key auth and audit), prints a table and rewrites the
 * results half of docs/benchmarks.md and its chart (docs/images/). Knobs: see SETTINGS_HELP.
 * Linux only (/proc).
 *
 * Every target is warmed up, then loaded for a fixed time while the CPU time of its measured
 * process is read before and after. The run fails when any request fails or a requirement
 * check does not hold, and it bounds its own duration.
 */
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { renderChartSvg } from "./chart.js";
import { clockTicksPerSecond, readTreeCpuTicks } from "./cpu.js";
import { type LoadPhase, loadFailure, runLoad } from "./load.js";
import { ProcessGroup } from "./processes.js";
import { MCP_CLIENT_HEADERS, TOOLS_LIST_REQUEST } from "./protocol.js";
import {
  type BenchReport,
  chartPath,
  compare,
  describeMachine,
  medianResults,
  renderMarkdown,
  renderText,
  type TargetResult,
  writeResultsSection,
} from "./report.js";
import { readSettings, SETTINGS_HELP, type Settings } from "./settings.js";
import {
  direct,
  FIFTY_RULE_POLICY,
  FIFTY_RULE_POLICY_FILTERING,
  haproxyJwt,
  mcpgwWithApiKey,
  mcpgwWithJwt,
  nodePeer,
  passthrough,
  passthroughDispatch,
  type TargetDefinition,
} from "./targets.js";

/** In report order; a baseline must come before the targets compared with it. */
const TARGETS: readonly TargetDefinition[] = [
  direct,
  passthrough,
  passthroughDispatch,
  mcpgwWithApiKey({
    name: "mcpgw",
    description:
      "mcpgw, one API key (argon2id), audit log and metrics on (CPU measured: the gateway)",
  }),
  mcpgwWithApiKey({
    name: "mcpgw-workers-2",
    description:
      "the same with workers: 2: a primary and two worker processes on the port (CPU: all three)",
    workers: 2,
    baseline: "mcpgw",
    maxCpuRatio: 1.1,
  }),
  mcpgwWithApiKey({
    name: "mcpgw-tracing",
    description: "the same with tracing on: every request's two spans exported over OTLP/HTTP",
    tracing: { sampleRatio: 1 },
    maxCpuRatio: 1.5,
  }),
  mcpgwWithApiKey({
    name: "mcpgw-tracing-10pct",
    description:
      "tracing on, sampling 10% of traces (parentbased_traceidratio), as docs/operations.md advises",
    tracing: { sampleRatio: 0.1 },
    maxCpuRatio: 1.5,
  }),
  mcpgwWithApiKey({
    name: "mcpgw-no-metrics",
    description: "the same with metrics.enabled: false, to show what metrics cost",
    extraConfig: { metrics: { enabled: false } },
  }),
  mcpgwWithApiKey({
    name: "mcpgw-policy-50",
    description:
      "mcpgw with a 50-rule policy and one rate limit: every request decided and limited",
    extraConfig: FIFTY_RULE_POLICY,
    baseline: "mcpgw",
    maxCpuRatio: 1.05,
  }),
  mcpgwWithApiKey({
    name: "mcpgw-policy-filtering",
    description:
      "the same and a rule refusing one listed tool: every tools/list parsed, filtered, written again",
    extraConfig: FIFTY_RULE_POLICY_FILTERING,
    baseline: "mcpgw",
    maxCpuRatio: 1.25,
  }),
  haproxyJwt,
  nodePeer(
    "node-fastify",
    "fastify",
    "a Node peer: fastify 5 + @fastify/reply-from, jose jwtVerify per request, a pino line each",
  ),
  nodePeer(
    "node-express",
    "express",
    "a Node peer: express 5 + http-proxy-middleware, jose jwtVerify per request, a pino line each",
  ),
  mcpgwWithJwt({
    name: "mcpgw-jwt-warm",
    description:
      "mcpgw, OAuth: one ES256 JWT reused (verified-token cache), audit log on (CPU: the gateway)",
    freshTokens: false,
    maxCpuRatio: 1.25,
    alsoWith: ["haproxy-jwt", "node-fastify", "node-express"],
  }),
  mcpgwWithJwt({
    name: "mcpgw-jwt-cold",
    description:
      "mcpgw, OAuth: a new ES256 JWT on every request (a signature check each), audit log on",
    freshTokens: true,
  }),
];

const DOC_PATH = new URL("../../docs/benchmarks.md", import.meta.url);

/** Per target, on top of the load: starting (argon2 hashing included) and stopping. */
const TARGET_OVERHEAD_SECONDS = 60;
/** The phase at half the target's measured rate, for latency. */
const HALF_LOAD_SECONDS = 3;

function selectTargets(only: Settings["only"]): readonly TargetDefinition[] {
  if (only === undefined) return TARGETS;
  const known = new Set(TARGETS.map((target) => target.name));
  const unknown = only.filter((name) => !known.has(name));
  if (unknown.length > 0) {
    throw new Error(
      `BENCH_TARGETS names unknown targets: ${unknown.join(", ")} (known: ${[...known].join(", ")})`,
    );
  }
  return TARGETS.filter((target) => only.includes(target.name));
}

/** Warm-up must also prove the target answers tools/list, not just any 2xx. */
function isToolsList(body: string): boolean {
  return body.includes('"tools"');
}

async function measure(
  target: TargetDefinition,
  settings: Settings,
  processes: ProcessGroup,
  scratchRoot: string,
  apiKey: string,
  ticksPerSecond: number,
  round: number,
): Promise<TargetResult> {
  const scratchDir = join(scratchRoot, `${target.name}-${round}`);
  await mkdir(scratchDir);
  const name = settings.rounds > 1 ? `${target.name} (round ${round})` : target.name;
  process.stderr.write(`bench: ${name}: starting\n`);
  const started = await target.start({ processes, scratchDir, apiKey });
  try {
    const phase: Omit<LoadPhase, "durationSeconds"> = {
      url: started.url,
      headers: {
        ...MCP_CLIENT_HEADERS,
        authorization:
          typeof started.authorization === "string" ? started.authorization : `Bearer ${apiKey}`,
      },
      ...(typeof started.authorization === "function" && { authorization: started.authorization }),
      body: TOOLS_LIST_REQUEST,
      connections: settings.connections,
    };
    process.stderr.write(`bench: ${name}: warming up for ${settings.warmupSeconds} s\n`);
    const warmup = await runLoad({
      ...phase,
      durationSeconds: settings.warmupSeconds,
      verifyBody: isToolsList,
    });
    const warmupProblem = loadFailure(warmup);
    // The measured process's last output usually says why (a 401 logged with its reason).
    if (warmupProblem) throw started.measured.failure(`warm-up: ${warmupProblem}`);

    process.stderr.write(`bench: ${name}: measuring for ${settings.durationSeconds} s\n`);
    const ticksBefore = readTreeCpuTicks(started.measured.pid);
    const load = await runLoad({ ...phase, durationSeconds: settings.durationSeconds });
    const ticksAfter = readTreeCpuTicks(started.measured.pid);
    const problem = loadFailure(load);
    if (problem) throw started.measured.failure(problem);

    // Latency where a deployment runs: half the rate it sustained at most, open loop.
    const rate = Math.max(1, Math.round(load.requestsPerSecond / 2));
    process.stderr.write(`bench: ${name}: ${HALF_LOAD_SECONDS} s at ${rate} req/s\n`);
    const half = await runLoad({ ...phase, durationSeconds: HALF_LOAD_SECONDS, overallRate: rate });
    const halfProblem = loadFailure(half);
    if (halfProblem) throw started.measured.failure(`half load: ${halfProblem}`);

    const findings = await started.finish({
      sent: warmup.sent + load.sent + half.sent,
      completed: warmup.completed + load.completed + half.completed,
    });
    const cpuMicros = ((ticksAfter - ticksBefore) * 1e6) / ticksPerSecond;
    return {
      target,
      round,
      load,
      cpuMicrosPerRequest: cpuMicros / load.completed,
      halfLoad: { rate, latencyP50Ms: half.latencyP50Ms, latencyP99Ms: half.latencyP99Ms },
      findings,
    };
  } finally {
    processes.killAll();
  }
}

async function main(): Promise<number> {
  if (process.argv.includes("--help")) {
    process.stdout.write(`Usage: npm run bench\n\nEnvironment:\n  ${SETTINGS_HELP.join("\n  ")}\n`);
    return 0;
  }
  let settings: Settings;
  try {
    settings = readSettings(process.env);
  } catch (error) {
    throw new Error(`${(error as Error).message}\n  ${SETTINGS_HELP.join("\n  ")}`);
  }
  const targets = selectTargets(settings.only);
  for (const target of targets) target.preflight?.();
  const ticksPerSecond = clockTicksPerSecond();

  const processes = new ProcessGroup();
  // Whatever ends the harness (a throw, the watchdog, Ctrl-C), no server outlives it.
  process.on("exit", () => processes.killAll());
  const scratchRoot = await mkdtemp(join(tmpdir(), "mcpgw-bench-"));
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      process.stderr.write(`bench: interrupted by ${signal}\n`);
      processes.killAll();
      rmSync(scratchRoot, { recursive: true, force: true });
      process.exit(130);
    });
  }
  const budgetSeconds =
    settings.rounds *
    targets.length *
    (settings.warmupSeconds + settings.durationSeconds + TARGET_OVERHEAD_SECONDS);
  const watchdog = setTimeout(() => {
    process.stderr.write(`bench: gave up after ${budgetSeconds} s; something hangs\n`);
    process.exit(1);
  }, budgetSeconds * 1000);

  // Base64url never contains the dots that would make the gateway treat the key as a JWT.
  const apiKey = randomBytes(32).toString("base64url");
  let keepScratch = true;
  try {
    const rounds: TargetResult[][] = [];
    for (let round = 1; round <= settings.rounds; round++) {
      const results: TargetResult[] = [];
      for (const target of targets) {
        results.push(
          await measure(target, settings, processes, scratchRoot, apiKey, ticksPerSecond, round),
        );
      }
      rounds.push(results);
    }
    const results = medianResults(rounds);
    const report: BenchReport = {
      date: new Date(),
      machine: describeMachine(),
      settings,
      results,
      comparisons: compare(rounds),
    };
    process.stdout.write(renderText(report));

    const failed = rounds
      .flat()
      .flatMap(({ target, round, findings }) =>
        findings
          .filter((finding) => finding.kind === "requirement" && !finding.ok)
          .map((finding) => `${target.name} (round ${round}): ${finding.check}`),
      );
    if (failed.length > 0) {
      process.stderr.write(
        `bench: FAILED, docs/benchmarks.md left as it was: ${failed.join("; ")}\n` +
          `bench: the targets' files are in ${scratchRoot}\n`,
      );
      return 1;
    }
    keepScratch = false;
    if (settings.only === undefined) {
      // The chart first, so that the section's image link never points at a missing file.
      const chart = chartPath(report.machine.node);
      await writeFile(new URL(`../../docs/${chart}`, import.meta.url), renderChartSvg(report));
      await writeResultsSection(DOC_PATH, renderMarkdown(report));
      process.stderr.write(`bench: wrote docs/benchmarks.md and docs/${chart}\n`);
    } else {
      process.stderr.write(
        "bench: BENCH_TARGETS is set, so docs/benchmarks.md is left as it was\n",
      );
    }
    return 0;
  } catch (error) {
    process.stderr.write(`bench: the targets' files are in ${scratchRoot}\n`);
    throw error;
  } finally {
    clearTimeout(watchdog);
    processes.killAll();
    if (!keepScratch) await rm(scratchRoot, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // Failures carry the failing process's last output in their message; a stack adds nothing.
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`bench: FAILED: ${message}\n`);
    process.exitCode = 1;
  },
);
