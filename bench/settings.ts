/** The benchmark's knobs, from the environment so that `npm run bench` needs no arguments. */

export interface Settings {
  /** Seconds of measured load per target. */
  durationSeconds: number;
  /** Seconds of unmeasured load first, so the JIT, the pools and the caches are warm. */
  warmupSeconds: number;
  /** Concurrent keep-alive connections of the load generator. */
  connections: number;
  /**
   * Times every target is measured, the targets taking turns; ratios are the median of each
   * round's ratio, so a slow spell of a shared machine moves one round, not the result.
   */
  rounds: number;
  /** Names of the targets to run; undefined for all of them. */
  only: readonly string[] | undefined;
}

export const SETTINGS_HELP = [
  "BENCH_DURATION     seconds of measured load per target and round (default 5)",
  "BENCH_ROUNDS       rounds: every target is measured this often, in turns (default 3)",
  "BENCH_WARMUP       seconds of warm-up load before it (default 2)",
  "BENCH_CONNECTIONS  concurrent connections (default 10)",
  "BENCH_TARGETS      comma-separated subset of the targets (default: all; only a full run",
  "                   rewrites docs/benchmarks.md, the section of its Node major version)",
  "BENCH_NODE         the node binary of the measured processes (default: the harness's own)",
];

/** `env[name]` as a positive number (an integer if asked), or `fallback` when unset or empty. */
export function positiveNumber(
  env: NodeJS.ProcessEnv,
  name: string,
  fallback: number,
  integer: boolean,
): number {
  const text = env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new Error(`${name}=${text}: expected a positive ${integer ? "integer" : "number"}`);
  }
  return value;
}

export function readSettings(env: NodeJS.ProcessEnv): Settings {
  const only = env.BENCH_TARGETS?.split(",")
    .map((name) => name.trim())
    .filter((name) => name !== "");
  return {
    durationSeconds: positiveNumber(env, "BENCH_DURATION", 5, false),
    rounds: positiveNumber(env, "BENCH_ROUNDS", 3, true),
    warmupSeconds: positiveNumber(env, "BENCH_WARMUP", 2, false),
    connections: positiveNumber(env, "BENCH_CONNECTIONS", 10, true),
    only: only === undefined || only.length === 0 ? undefined : only,
  };
}
