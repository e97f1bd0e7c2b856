/** Runs the built `mcpgw` binary as a child process, as an operator or systemd would. */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { createInterface } from "node:readline";
import { vi } from "vitest";
import type { LogLine } from "./gateway.js";

export const BIN = path.resolve(import.meta.dirname, "../../dist/src/main.js");

export interface RunningBin {
  child: ChildProcess;
  logs: LogLine[];
  stderr: () => string;
  /** Resolves with the first log line (from now on or already seen) matching `predicate`. */
  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

export function spawnBin(args: string[], env: NodeJS.ProcessEnv = {}): RunningBin {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const logs: LogLine[] = [];
  let stderr = "";
  child.stderr?.on("data", (chunk) => {
    stderr += chunk;
  });
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
    try {
      logs.push(JSON.parse(line) as LogLine);
    } catch {
      logs.push({ level: "raw", msg: line });
    }
  });
  // "close", not "exit": once stdout has ended too, every line the process wrote is in `logs`.
  const exited = once(child, "close").then(([code]) => code as number | null);
  return {
    child,
    logs,
    stderr: () => stderr,
    exited,
    waitForLog: (predicate, timeoutMs = 10_000) =>
      vi.waitFor(
        () => {
          const found = logs.find(predicate);
          if (!found)
            throw new Error(
              `no matching log line yet; have: ${logs.map((l) => l.msg).join(" | ")}`,
            );
          return found;
        },
        { timeout: timeoutMs, interval: 20 },
      ),
  };
}

/** Runs a short CLI command to completion. */
export async function runBin(args: string[], input?: string, env: NodeJS.ProcessEnv = {}) {
  const running = spawnBin(args, env);
  let stdout = "";
  running.child.stdout?.on("data", (chunk) => {
    stdout += chunk;
  });
  running.child.stdin?.end(input ?? "");
  const code = await running.exited;
  return { code, stdout, stderr: running.stderr() };
}
