/** The built `mcpgw run` on a config in a temp dir, as an operator runs it (e2e tests). */
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { stringify } from "yaml";
import { type RunningBin, spawnBin } from "./bin.js";
import { LOOPBACK_OUTBOUND } from "./outbound.js";

export interface Daemon {
  bin: RunningBin;
  url: string;
  dir: string;
  file: string;
  audit: string;
  /** Rewrites the config file with `config` over the defaults (for reloads). */
  write(config: Record<string, unknown>): Promise<void>;
  auditLines(): Promise<Record<string, unknown>[]>;
}

/** Every daemon started and not yet reaped; `killDaemons()` after each test. */
const started: RunningBin[] = [];

export function killDaemons(): void {
  for (const bin of started.splice(0)) if (bin.child.exitCode === null) bin.child.kill("SIGKILL");
}

/** Keeps a bin started some other way (a run expected to fail) in the same cleanup. */
export function track(bin: RunningBin): RunningBin {
  started.push(bin);
  return bin;
}

/**
 * Writes `mcpgw.yaml` (listen on port 0, `upstreamUrl`, audit.jsonl beside it, then `config`)
 * into a new temp dir, runs the built bin on it and waits for its `listening` line.
 */
export async function startDaemon(
  upstreamUrl: string,
  config: Record<string, unknown>,
  env: NodeJS.ProcessEnv = {},
): Promise<Daemon> {
  const dir = await mkdtemp(path.join(tmpdir(), "mcpgw-e2e-"));
  const file = path.join(dir, "mcpgw.yaml");
  const audit = path.join(dir, "audit.jsonl");
  const write = (next: Record<string, unknown>) =>
    writeFile(
      file,
      stringify({
        listen: "127.0.0.1:0",
        upstream: { url: upstreamUrl },
        audit: { path: "audit.jsonl" },
        // The tests' identity providers and token endpoints listen on loopback.
        outbound: LOOPBACK_OUTBOUND,
        ...next,
      }),
    );
  await write(config);
  const bin = track(spawnBin(["run", "--config", file], env));
  const listening = await bin.waitForLog((line) => line.msg === "listening");
  return {
    bin,
    url: listening.url as string,
    dir,
    file,
    audit,
    write,
    auditLines: async () =>
      (await readFile(audit, "utf8"))
        .split("\n")
        .filter(Boolean)
        .map((line) => JSON.parse(line)),
  };
}

/** `auth.keys` entries from `[id, hash]` pairs. */
export const keys = (...entries: [string, string][]) => ({
  auth: { keys: entries.map(([id, hash]) => ({ id, hash })) },
});
