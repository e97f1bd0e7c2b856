/**
 * `npm run test:soak`: mcpgw under open-loop load at half its saturation rate for a long time
 * (10 minutes by default), requests alternating an API key and an OAuth JWT, while its config
 * is rewritten and reloaded (SIGHUP) every few seconds and the issuer rotates its signing key.
 * It fails on any failed request, an audit line missing, a reload that did not apply, or a
 * resident memory (RSS) that grows by 10 % or more after warm-up; heap is reported beside it.
 * A full run that passes rewrites the soak section of docs/benchmarks.md. Knobs: SOAK_HELP.
 * Linux only (/proc).
 */
import { randomBytes } from "node:crypto";
import { createReadStream, rmSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { stringify } from "yaml";
import { startTokenIssuer, type TokenIssuer } from "./jwt.js";
import { type LoadOutcome, type LoadPhase, loadFailure, runLoad } from "./load.js";
import { readTreeRssBytes } from "./memory.js";
import { ProcessGroup, type ServiceProcess } from "./processes.js";
import { MCP_CLIENT_HEADERS, TOOLS_LIST_REQUEST } from "./protocol.js";
import { describeMachine, type Machine, RESULTS_MARKER } from "./report.js";
import { positiveNumber } from "./settings.js";
import {
  type Finding,
  hashKey,
  listeningUrl,
  parseLogLine,
  READY_TIMEOUT_MS,
  STOP_GRACE_MS,
  shutdownFindings,
  startGateway,
  startUpstream,
} from "./targets.js";

interface SoakSettings {
  durationSeconds: number;
  reloadIntervalSeconds: number;
  /** The gateway's `workers:` setting. */
  workers: number | "auto";
  connections: number;
}

const SOAK_HELP = [
  "SOAK_DURATION         seconds of load at half saturation (default 600, at least 30; only",
  "                      a full 600 s run that passes rewrites docs/benchmarks.md)",
  "SOAK_RELOAD_INTERVAL  seconds between two reloads (default 5)",
  "SOAK_WORKERS          the gateway's workers: setting, a number or auto (default 1)",
  "SOAK_CONNECTIONS      concurrent connections of the load generator (default 10)",
  "BENCH_NODE            the node binary of the gateway and the upstream (default: the",
  "                      harness's own)",
];

const FULL_DURATION_SECONDS = 600;
const MIN_DURATION_SECONDS = 30;
/** Closed-loop load before the soak: a warm-up, then the phase that measures saturation. */
const WARMUP_SECONDS = 2;
const SATURATION_SECONDS = 5;
/** Memory is sampled this often during the soak. */
const SAMPLE_INTERVAL_MS = 1000;
/** Warm-up is this share of the duration, and at least MIN_WARMUP_SECONDS. */
const WARMUP_SHARE = 0.2;
const MIN_WARMUP_SECONDS = 10;
/** The baseline is the median of this long after warm-up, the end that of the last as long. */
const WINDOW_SECONDS = 10;
const MAX_RSS_GROWTH = 0.1;
/** The JWT clients send is replaced this often: clients reuse a token, not one per request. */
const TOKEN_REUSE_MS = 1000;
/** From SIGHUP to the gateway's outcome line. */
const RELOAD_TIMEOUT_MS = 30_000;
/** The gateway refreshes the JWKS this often, so a dropped key is seen within the soak. */
const JWKS_CACHE_TTL = "5s";
/** Starting, saturation, stopping and the report, on top of the soak itself. */
const OVERHEAD_SECONDS = 300;

const DOC_PATH = new URL("../../docs/benchmarks.md", import.meta.url);
const SECTION_BEGIN = "<!-- soak:begin -->";
const SECTION_END = "<!-- soak:end -->";

function readSoakSettings(env: NodeJS.ProcessEnv): SoakSettings {
  const durationSeconds = positiveNumber(env, "SOAK_DURATION", FULL_DURATION_SECONDS, false);
  if (durationSeconds < MIN_DURATION_SECONDS) {
    throw new Error(
      `SOAK_DURATION=${durationSeconds}: at least ${MIN_DURATION_SECONDS} s (warm-up and two windows)`,
    );
  }
  const workers =
    env.SOAK_WORKERS === "auto" ? "auto" : positiveNumber(env, "SOAK_WORKERS", 1, true);
  return {
    durationSeconds,
    reloadIntervalSeconds: positiveNumber(env, "SOAK_RELOAD_INTERVAL", 5, false),
    workers,
    connections: positiveNumber(env, "SOAK_CONNECTIONS", 10, true),
  };
}

/** One sample of the gateway's memory, `t` seconds into the soak. */
interface Sample {
  t: number;
  /** Resident memory of the gateway's processes, summed. */
  rssBytes: number;
  /** V8 heap used (`mcpgw_nodejs_heap_size_used_bytes`, summed over workers); absent if unread. */
  heapBytes: number | undefined;
  /** V8 heap committed (`..._heap_size_total_bytes`), in the CSV: tells heap growth from native. */
  heapTotalBytes: number | undefined;
  /** Requests the gateway has counted (`mcpgw_requests_total`), saturation phases included. */
  requests: number | undefined;
}

interface ReloadRecord {
  /** When SIGHUP was sent, seconds into the soak. */
  t: number;
  /** "reloaded", "unchanged", the failure line's message, or why no outcome came. */
  outcome: string;
  /** From SIGHUP to the outcome line. */
  ms: number;
}

interface Growth {
  baseline: number;
  end: number;
  /** The least and the most of each window's samples. */
  baselineRange: [number, number];
  endRange: [number, number];
  /** end ÷ baseline − 1. */
  growth: number;
}

interface Check {
  check: string;
  expected: string;
  observed: string;
  ok: boolean;
}

interface SoakReport {
  date: Date;
  machine: Machine;
  harnessNode: string;
  settings: SoakSettings;
  saturationRate: number;
  rate: number;
  soak: LoadOutcome;
  apiKeyRequests: number;
  jwtRequests: number;
  reloads: ReloadRecord[];
  reloadedLines: number;
  expectedReloads: number;
  rotatedAt: number | undefined;
  droppedAt: number | undefined;
  jwksFetches: { total: number; afterRotation: number; afterDrop: number };
  samples: Sample[];
  warmupSeconds: number;
  rss: Growth;
  heap: Growth;
  failures: string[];
  checks: Check[];
  /** Other findings of the stop, for context. */
  notes: Finding[];
}

/** Warm-up must also prove the gateway answers tools/list, not just any 2xx. */
function isToolsList(body: string): boolean {
  return body.includes('"tools"');
}

function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** The median of the window after warm-up against the median of the last window. */
function growthOf(
  samples: readonly Sample[],
  value: (sample: Sample) => number | undefined,
  warmupSeconds: number,
  durationSeconds: number,
): Growth {
  const within = (from: number, to: number) =>
    samples
      .filter((sample) => sample.t >= from && sample.t < to)
      .map(value)
      .filter((entry): entry is number => entry !== undefined);
  const baseline = within(warmupSeconds, warmupSeconds + WINDOW_SECONDS);
  const end = within(durationSeconds - WINDOW_SECONDS, durationSeconds + 1);
  const range = (values: number[]): [number, number] => [Math.min(...values), Math.max(...values)];
  return {
    baseline: median(baseline),
    end: median(end),
    growth: median(end) / median(baseline) - 1,
    baselineRange: range(baseline),
    endRange: range(end),
  };
}

/** Sums every series of `name` in a Prometheus exposition; undefined when there is none. */
function sumSeries(exposition: string, name: string): number | undefined {
  let sum: number | undefined;
  for (const line of exposition.split("\n")) {
    if (!line.startsWith(name)) continue;
    const next = line[name.length];
    if (next !== " " && next !== "{") continue;
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(value)) sum = (sum ?? 0) + value;
  }
  return sum;
}

async function scrape(
  metricsUrl: string,
): Promise<Pick<Sample, "heapBytes" | "heapTotalBytes" | "requests">> {
  const none = { heapBytes: undefined, heapTotalBytes: undefined, requests: undefined };
  try {
    const response = await fetch(metricsUrl, { signal: AbortSignal.timeout(SAMPLE_INTERVAL_MS) });
    const text = await response.text();
    if (!response.ok) return none;
    return {
      heapBytes: sumSeries(text, "mcpgw_nodejs_heap_size_used_bytes"),
      heapTotalBytes: sumSeries(text, "mcpgw_nodejs_heap_size_total_bytes"),
      requests: sumSeries(text, "mcpgw_requests_total"),
    };
  } catch {
    return none;
  }
}

/** The outcome of a reload in the gateway's log (the primary's one line, with workers). */
function reloadOutcome(line: string): string | undefined {
  if (!line.includes('"config ')) return undefined;
  const msg = parseLogLine(line)?.msg;
  if (typeof msg !== "string") return undefined;
  if (msg === "config reloaded") return "reloaded";
  if (msg === "config unchanged") return "unchanged";
  if (msg.startsWith("config reload failed")) return msg;
  return undefined;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, Math.max(0, ms));
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });
}

/**
 * Every `intervalSeconds` until `durationSeconds`: rewrites the config with a real change
 * (`config(n)` for the n-th reload), sends SIGHUP and waits for the outcome line.
 */
async function reloadRepeatedly(options: {
  gateway: ServiceProcess;
  configPath: string;
  config: (reload: number) => Record<string, unknown>;
  intervalSeconds: number;
  durationSeconds: number;
  elapsed: () => number;
  stop: AbortSignal;
  records: ReloadRecord[];
}): Promise<void> {
  const { gateway, intervalSeconds, durationSeconds, elapsed, stop, records } = options;
  for (let n = 1; n * intervalSeconds < durationSeconds; n++) {
    await sleep((n * intervalSeconds - elapsed()) * 1000, stop);
    if (stop.aborted) return;
    await writeFile(options.configPath, stringify(options.config(n)));
    const outcome = gateway.waitFor("reload outcome line", reloadOutcome, RELOAD_TIMEOUT_MS);
    const t = elapsed();
    if (!gateway.signal("SIGHUP")) {
      outcome.catch(() => {});
      records.push({ t, outcome: "the gateway has exited", ms: 0 });
      return;
    }
    try {
      records.push({ t, outcome: await outcome, ms: (elapsed() - t) * 1000 });
    } catch (error) {
      records.push({ t, outcome: (error as Error).message.split("\n")[0] ?? "", ms: 0 });
    }
  }
}

/**
 * The non-2xx lines of the audit file by status, auth_result and error, with when the first
 * and the last were written (seconds into the soak): what failed requests were refused for.
 */
async function auditFailures(auditPath: string, soakStart: number): Promise<string[]> {
  const groups = new Map<string, { count: number; first: number; last: number }>();
  const lines = createInterface({
    input: createReadStream(auditPath),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  for await (const line of lines) {
    if (line.includes('"status":2')) continue;
    const entry = parseLogLine(line);
    if (!entry || typeof entry.status !== "number" || entry.status < 300) continue;
    const key = [entry.status, entry.auth_result, entry.error]
      .filter((part) => part !== undefined)
      .join(" ");
    const t = (Date.parse(String(entry.ts)) - soakStart) / 1000;
    const group = groups.get(key) ?? { count: 0, first: t, last: t };
    group.count++;
    group.first = Math.min(group.first, t);
    group.last = Math.max(group.last, t);
    groups.set(key, group);
  }
  return [...groups].map(
    ([key, { count, first, last }]) =>
      `${count} × ${key}, from ${first.toFixed(1)} s to ${last.toFixed(1)} s into the soak`,
  );
}

async function main(): Promise<number> {
  if (process.argv.includes("--help")) {
    process.stdout.write(`Usage: npm run test:soak\n\nEnvironment:\n  ${SOAK_HELP.join("\n  ")}\n`);
    return 0;
  }
  let settings: SoakSettings;
  try {
    settings = readSoakSettings(process.env);
  } catch (error) {
    throw new Error(`${(error as Error).message}\n  ${SOAK_HELP.join("\n  ")}`);
  }
  const { durationSeconds, reloadIntervalSeconds, connections } = settings;

  const processes = new ProcessGroup();
  // Whatever ends the harness (a throw, the watchdog, Ctrl-C), no server outlives it.
  process.on("exit", () => processes.killAll());
  const scratchDir = await mkdtemp(join(tmpdir(), "mcpgw-soak-"));
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      process.stderr.write(`soak: interrupted by ${signal}\n`);
      processes.killAll();
      rmSync(scratchDir, { recursive: true, force: true });
      process.exit(130);
    });
  }
  const budgetSeconds = durationSeconds + OVERHEAD_SECONDS;
  const watchdog = setTimeout(() => {
    process.stderr.write(`soak: gave up after ${budgetSeconds} s; something hangs\n`);
    process.exit(1);
  }, budgetSeconds * 1000);

  let issuer: TokenIssuer | undefined;
  let keepScratch = true;
  try {
    const upstream = await startUpstream(processes);
    issuer = await startTokenIssuer();
    const tokens = issuer;
    // Base64url never contains the dots that would make the gateway treat a key as a JWT.
    const apiKey = randomBytes(32).toString("base64url");
    const [hash, extraHash] = await Promise.all([
      hashKey(apiKey),
      hashKey(randomBytes(32).toString("base64url")),
    ]);
    const oauth = { ...tokens.oauthConfig(), jwks_cache_ttl: JWKS_CACHE_TTL };
    // The reloads' change: a second key, unused, in the file every other time.
    const auth = (withExtraKey: boolean) => ({
      enabled: true,
      keys: [
        { id: "soak", hash, scopes: ["*"] },
        ...(withExtraKey ? [{ id: "soak-extra", hash: extraHash, scopes: ["*"] }] : []),
      ],
      oauth,
    });
    process.stderr.write("soak: starting the gateway\n");
    const { gateway, auditPath, configPath, config } = await startGateway(
      processes,
      "mcpgw",
      scratchDir,
      upstream.url,
      {
        auth: auth(false),
        metrics: { enabled: true },
        log: { level: "info" },
        workers: settings.workers,
      },
    );
    let reloadedLines = 0;
    const failedLines: string[] = [];
    gateway.onLine((line) => {
      const outcome = reloadOutcome(line);
      if (outcome === "reloaded") reloadedLines++;
      else if (outcome?.startsWith("config reload failed")) failedLines.push(outcome);
    });
    const url = await gateway.waitFor('"listening" log line', listeningUrl, READY_TIMEOUT_MS);
    const metricsUrl = new URL("/metrics", url).href;

    // Every other request carries the API key, the others a JWT that is replaced every second.
    const apiKeyHeader = `Bearer ${apiKey}`;
    let token = tokens.mint();
    let mintedAt = performance.now();
    let apiKeyRequests = 0;
    let jwtRequests = 0;
    const authorization = () => {
      if ((apiKeyRequests + jwtRequests) % 2 === 0) {
        apiKeyRequests++;
        return apiKeyHeader;
      }
      jwtRequests++;
      if (performance.now() - mintedAt >= TOKEN_REUSE_MS) {
        token = tokens.mint();
        mintedAt = performance.now();
      }
      return `Bearer ${token}`;
    };
    const phase: Omit<LoadPhase, "durationSeconds"> = {
      url,
      headers: { ...MCP_CLIENT_HEADERS, authorization: apiKeyHeader },
      authorization,
      body: TOOLS_LIST_REQUEST,
      connections,
      verifyBody: isToolsList,
    };

    process.stderr.write(`soak: warming up for ${WARMUP_SECONDS} s\n`);
    const warmup = await runLoad({ ...phase, durationSeconds: WARMUP_SECONDS });
    const warmupProblem = loadFailure(warmup);
    if (warmupProblem) throw gateway.failure(`warm-up: ${warmupProblem}`);
    process.stderr.write(`soak: measuring saturation for ${SATURATION_SECONDS} s\n`);
    const saturation = await runLoad({ ...phase, durationSeconds: SATURATION_SECONDS });
    const saturationProblem = loadFailure(saturation);
    if (saturationProblem) throw gateway.failure(`saturation: ${saturationProblem}`);
    const rate = Math.max(1, Math.round(saturation.requestsPerSecond / 2));
    apiKeyRequests = 0;
    jwtRequests = 0;

    process.stderr.write(
      `soak: ${durationSeconds} s at ${rate} req/s, a reload every ${reloadIntervalSeconds} s\n`,
    );
    const soakStart = Date.now();
    const startedAt = performance.now();
    const elapsed = () => (performance.now() - startedAt) / 1000;
    const load = runLoad({ ...phase, durationSeconds, overallRate: rate });
    const stop = new AbortController();

    const samples: Sample[] = [];
    let sampling = false;
    const takeSample = async () => {
      if (sampling) return;
      sampling = true;
      try {
        const t = elapsed();
        const rssBytes = readTreeRssBytes(gateway.pid);
        samples.push({ t, rssBytes, ...(await scrape(metricsUrl)) });
      } catch {
        // the gateway has exited; the checks say so
      } finally {
        sampling = false;
      }
    };
    // Samples fall between the whole seconds at which reloads happen, so that they do not all
    // land on the argon2 run (64 MiB) of the first API-key request after a reload.
    let sampler: NodeJS.Timeout | undefined;
    const firstSample = setTimeout(() => {
      void takeSample();
      sampler = setInterval(() => void takeSample(), SAMPLE_INTERVAL_MS);
    }, SAMPLE_INTERVAL_MS / 2);

    let rotatedAt: number | undefined;
    let droppedAt: number | undefined;
    let fetchesAtRotation = 0;
    let fetchesAtDrop = 0;
    const rotation = setTimeout(
      () => {
        const kid = tokens.rotate();
        token = tokens.mint();
        mintedAt = performance.now();
        rotatedAt = elapsed();
        fetchesAtRotation = tokens.jwksFetches();
        process.stderr.write(`soak: ${rotatedAt.toFixed(0)} s: signing with the new key ${kid}\n`);
      },
      (durationSeconds / 3) * 1000,
    );
    const drop = setTimeout(
      () => {
        tokens.dropPrevious();
        droppedAt = elapsed();
        fetchesAtDrop = tokens.jwksFetches();
        process.stderr.write(`soak: ${droppedAt.toFixed(0)} s: the previous key is dropped\n`);
      },
      ((2 * durationSeconds) / 3) * 1000,
    );

    const reloads: ReloadRecord[] = [];
    const reloading = reloadRepeatedly({
      gateway,
      configPath,
      config: (n) => ({ ...config, auth: auth(n % 2 === 1) }),
      intervalSeconds: reloadIntervalSeconds,
      durationSeconds,
      elapsed,
      stop: stop.signal,
      records: reloads,
    });
    let soak: LoadOutcome;
    try {
      soak = await load;
    } finally {
      stop.abort();
      clearTimeout(firstSample);
      clearInterval(sampler);
      clearTimeout(rotation);
      clearTimeout(drop);
      await reloading;
    }

    await writeFile(
      join(scratchDir, "samples.csv"),
      [
        "t_seconds,rss_bytes,heap_used_bytes,heap_total_bytes,requests",
        ...samples.map((sample) =>
          [
            sample.t.toFixed(3),
            sample.rssBytes,
            sample.heapBytes ?? "",
            sample.heapTotalBytes ?? "",
            sample.requests ?? "",
          ].join(","),
        ),
        "",
      ].join("\n"),
    );
    process.stderr.write("soak: stopping the gateway\n");
    const exit = await gateway.stop(STOP_GRACE_MS);
    await upstream.process.stop(STOP_GRACE_MS);
    const jwksFetches = tokens.jwksFetches();
    const stopFindings = await shutdownFindings(exit, auditPath, {
      sent: warmup.sent + saturation.sent + soak.sent,
      completed: warmup.completed + saturation.completed + soak.completed,
    });

    const warmupSeconds = Math.max(MIN_WARMUP_SECONDS, durationSeconds * WARMUP_SHARE);
    const rss = growthOf(samples, (sample) => sample.rssBytes, warmupSeconds, durationSeconds);
    const heap = growthOf(samples, (sample) => sample.heapBytes, warmupSeconds, durationSeconds);
    const expectedReloads = Math.ceil(durationSeconds / reloadIntervalSeconds) - 1;
    const problem = loadFailure(soak);
    const failures = problem === undefined ? [] : await auditFailures(auditPath, soakStart);
    const notApplied = reloads.filter((reload) => reload.outcome !== "reloaded");
    const checks: Check[] = [
      ...stopFindings
        .filter((finding) => finding.kind === "requirement")
        .map((finding) => ({
          check: finding.check,
          expected: finding.expected ?? "",
          observed: finding.observed,
          ok: finding.ok,
        })),
      {
        check: "failed requests",
        expected: "0: no connection error, timeout, non-2xx or unexpected body",
        observed: problem ?? "0",
        ok: problem === undefined,
      },
      {
        check: "reloads",
        expected: `${expectedReloads} ± 1 "config reloaded", no "config reload failed"`,
        observed:
          `${reloadedLines} "config reloaded", ${failedLines.length} failed` +
          (notApplied.length > 0
            ? `; not applied: ${notApplied
                .slice(0, 3)
                .map((reload) => `${reload.t.toFixed(0)} s: ${reload.outcome}`)
                .join("; ")}`
            : ""),
        ok:
          Math.abs(reloadedLines - expectedReloads) <= 1 &&
          failedLines.length === 0 &&
          notApplied.length === 0,
      },
      {
        check: "RSS growth after warm-up",
        expected: `< ${MAX_RSS_GROWTH * 100} %`,
        observed: percent(rss.growth),
        ok: rss.growth < MAX_RSS_GROWTH,
      },
    ];
    const report: SoakReport = {
      date: new Date(),
      machine: describeMachine(),
      harnessNode: process.version,
      settings,
      saturationRate: saturation.requestsPerSecond,
      rate,
      soak,
      apiKeyRequests,
      jwtRequests,
      reloads,
      reloadedLines,
      expectedReloads,
      rotatedAt,
      droppedAt,
      jwksFetches: {
        total: jwksFetches,
        afterRotation: rotatedAt === undefined ? 0 : jwksFetches - fetchesAtRotation,
        afterDrop: droppedAt === undefined ? 0 : jwksFetches - fetchesAtDrop,
      },
      samples,
      warmupSeconds,
      rss,
      heap,
      failures,
      checks,
      notes: stopFindings.filter((finding) => finding.kind !== "requirement"),
    };
    process.stdout.write(renderText(report));

    const failed = checks.filter((check) => !check.ok).map((check) => check.check);
    if (failed.length > 0) {
      process.stderr.write(
        `soak: FAILED: ${failed.join("; ")}\n` +
          `soak: the gateway's config, audit file and memory samples are in ${scratchDir}\n`,
      );
      return 1;
    }
    keepScratch = false;
    if (durationSeconds === FULL_DURATION_SECONDS) {
      await writeSoakSection(renderMarkdown(report));
      process.stderr.write("soak: wrote the soak section of docs/benchmarks.md\n");
    } else {
      process.stderr.write(
        `soak: a run of ${durationSeconds} s leaves docs/benchmarks.md as it was (a full run is ${FULL_DURATION_SECONDS} s)\n`,
      );
    }
    return 0;
  } catch (error) {
    process.stderr.write(`soak: the gateway's config and audit file are in ${scratchDir}\n`);
    throw error;
  } finally {
    clearTimeout(watchdog);
    processes.killAll();
    await issuer?.close();
    if (!keepScratch) await rm(scratchDir, { recursive: true, force: true });
  }
}

function percent(growth: number): string {
  if (!Number.isFinite(growth)) return "n/a (no samples)";
  return `${growth >= 0 ? "+" : ""}${(growth * 100).toFixed(1)} %`;
}

function mib(bytes: number | undefined): string {
  return bytes === undefined || !Number.isFinite(bytes) ? "n/a" : (bytes / 2 ** 20).toFixed(1);
}

function range([least, most]: [number, number]): string {
  return `${mib(least)}–${mib(most)}`;
}

function count(value: number): string {
  return value.toLocaleString("en-US");
}

function seconds(value: number | undefined): string {
  return value === undefined ? "not reached" : `${value.toFixed(1)} s`;
}

/** The samples nearest to every 30 s (every 5 s in runs under 2 minutes), with what happened. */
function timeline(report: SoakReport): string[][] {
  const { durationSeconds } = report.settings;
  const step = durationSeconds < 120 ? 5 : 30;
  const rows: string[][] = [];
  for (let mark = 0; mark <= durationSeconds; mark += step) {
    // The first sample after the mark (the reload at the mark done), else the last before it.
    const interval = SAMPLE_INTERVAL_MS / 1000;
    const nearest =
      report.samples.find((sample) => sample.t >= mark && sample.t < mark + interval) ??
      report.samples.findLast((sample) => sample.t < mark && sample.t >= mark - interval);
    if (nearest === undefined) continue;
    const events: string[] = [];
    const between = (at: number | undefined) => at !== undefined && at >= mark && at < mark + step;
    const at = (value: number | undefined) =>
      value === undefined ? "" : ` at ${value.toFixed(0)} s`;
    if (between(report.warmupSeconds)) events.push(`warm-up over${at(report.warmupSeconds)}`);
    if (between(report.rotatedAt)) events.push(`key rotated${at(report.rotatedAt)}`);
    if (between(report.droppedAt)) events.push(`old key dropped${at(report.droppedAt)}`);
    rows.push([
      String(mark),
      mib(nearest.rssBytes),
      mib(nearest.heapBytes),
      nearest.requests === undefined ? "n/a" : count(nearest.requests),
      String(report.reloads.filter((reload) => reload.t <= nearest.t).length),
      events.join(", "),
    ]);
  }
  return rows;
}

const TIMELINE_HEADER = [
  "t (s)",
  "RSS (MiB)",
  "heap (MiB)",
  "gateway requests",
  "reloads",
  "event",
];

function workersLabel(workers: SoakSettings["workers"]): string {
  return workers === 1 ? "1 process" : `workers: ${workers}`;
}

/** The report's lines, shared by the terminal and the doc. */
function summaryLines(report: SoakReport): string[] {
  const { settings, soak, rss, heap } = report;
  const reloadMs = report.reloads
    .filter((reload) => reload.outcome === "reloaded")
    .map((reload) => reload.ms);
  const baselineWindow = `${report.warmupSeconds.toFixed(0)}–${(report.warmupSeconds + WINDOW_SECONDS).toFixed(0)} s`;
  const endWindow = `${settings.durationSeconds - WINDOW_SECONDS}–${settings.durationSeconds} s`;
  return [
    `Settings: ${settings.durationSeconds} s at half saturation, a reload every ${settings.reloadIntervalSeconds} s, ${workersLabel(settings.workers)}, ${settings.connections} connections, all on 127.0.0.1`,
    `Machine: gateway on Node ${report.machine.node} (harness and load generator on Node ${report.harnessNode}), ${report.machine.cpuModel} × ${report.machine.cores} cores, ${report.machine.os}`,
    `Rate: saturation ${count(Math.round(report.saturationRate))} req/s (${SATURATION_SECONDS} s closed loop); soak ${count(report.rate)} req/s open loop, ${count(Math.round(soak.requestsPerSecond))} req/s achieved; p50 ${soak.latencyP50Ms.toFixed(2)} ms, p99 ${soak.latencyP99Ms.toFixed(2)} ms`,
    `Requests: ${count(soak.sent)} sent, ${count(soak.completed)} answered (${count(report.apiKeyRequests)} with the API key, ${count(report.jwtRequests)} with a JWT), ${count(soak.errors)} errors, ${count(soak.non2xx)} non-2xx, ${count(soak.mismatches)} unexpected bodies`,
    `Reloads: ${report.reloads.length} SIGHUPs, each after a change to auth.keys; ${report.reloadedLines} "config reloaded" (expected ${report.expectedReloads}); SIGHUP to the log line: median ${median(reloadMs).toFixed(0)} ms, max ${reloadMs.length > 0 ? Math.max(...reloadMs).toFixed(0) : "n/a"} ms`,
    `JWKS: a new signing key published and used at ${seconds(report.rotatedAt)}, the previous key dropped at ${seconds(report.droppedAt)}; the gateway fetched the JWKS ${report.jwksFetches.total} times (${report.jwksFetches.afterRotation} after the rotation, ${report.jwksFetches.afterDrop} after the drop)`,
    `RSS: ${mib(rss.baseline)} MiB after warm-up (median of ${baselineWindow}; ${range(rss.baselineRange)}), ${mib(rss.end)} MiB at the end (median of ${endWindow}; ${range(rss.endRange)}): ${percent(rss.growth)}`,
    `Heap used: ${mib(heap.baseline)} MiB after warm-up (${range(heap.baselineRange)}), ${mib(heap.end)} MiB at the end (${range(heap.endRange)}): ${percent(heap.growth)} (reported; it moves with every garbage collection)`,
    ...report.notes.map((note) => `${note.check}: ${note.observed}`),
    ...report.failures.map((failure) => `Audit lines not 2xx: ${failure}`),
  ];
}

function checkLines(report: SoakReport): string[] {
  return report.checks.map(
    (check) =>
      `${check.ok ? "PASS" : "FAIL"} ${check.check}: ${check.observed} (expected ${check.expected})`,
  );
}

function renderText(report: SoakReport): string {
  const rows = [TIMELINE_HEADER, ...timeline(report)];
  const widths = TIMELINE_HEADER.map((_, column) =>
    Math.max(...rows.map((row) => (row[column] ?? "").length)),
  );
  const table = rows.map((row) =>
    row
      .map((cell, column) =>
        column === row.length - 1 ? cell : cell.padStart(widths[column] ?? 0),
      )
      .join("  ")
      .trimEnd(),
  );
  const passed = report.checks.every((check) => check.ok);
  return [
    "",
    ...summaryLines(report),
    "",
    ...table,
    "",
    ...checkLines(report),
    "",
    `soak: ${passed ? "PASS" : "FAIL"}`,
    "",
  ].join("\n");
}

/** The command line of this run, the knobs set in its environment included. */
function command(): string {
  const knobs = Object.keys(process.env)
    .filter((name) => name.startsWith("SOAK_") && process.env[name] !== "")
    .sort()
    .map((name) => `${name}=${process.env[name]}`);
  // BENCH_NODE's path is the machine's; its version is in the report.
  if (process.env.BENCH_NODE) knobs.push(`BENCH_NODE=<node ${describeMachine().node}>`);
  return [...knobs, "npm run test:soak"].join(" ");
}

function renderMarkdown(report: SoakReport): string {
  const line = (cells: readonly string[]) => `| ${cells.join(" | ")} |`;
  const alignment = TIMELINE_HEADER.map((_, column) =>
    column === TIMELINE_HEADER.length - 1 ? ":--" : "--:",
  );
  return [
    `Last full run: ${report.date.toISOString()}, \`${command()}\`.`,
    "",
    ...summaryLines(report).map((entry) => `- ${entry}`),
    ...checkLines(report).map((entry) => `- ${entry}`),
    "",
    line(TIMELINE_HEADER),
    line(alignment),
    ...timeline(report).map(line),
  ].join("\n");
}

/** Replaces what is between the soak markers, which stand above the bench's generated part. */
async function writeSoakSection(markdown: string): Promise<void> {
  const text = await readFile(DOC_PATH, "utf8");
  const begin = text.indexOf(SECTION_BEGIN);
  const end = text.indexOf(SECTION_END);
  const generated = text.indexOf(RESULTS_MARKER);
  if (begin === -1 || end < begin || (generated !== -1 && end > generated)) {
    throw new Error(
      `docs/benchmarks.md needs ${SECTION_BEGIN} and ${SECTION_END}, in that order, above the bench's generated part`,
    );
  }
  await writeFile(
    DOC_PATH,
    `${text.slice(0, begin + SECTION_BEGIN.length)}\n${markdown}\n${text.slice(end)}`,
  );
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // Failures carry the failing process's last output in their message; a stack adds nothing.
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`soak: FAILED: ${message}\n`);
    process.exitCode = 1;
  },
);
