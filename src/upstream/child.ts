/**
 * A stdio MCP server as a child process: how it is started (only its route's environment, its
 * own process group), how messages cross its pipes, where its stderr goes, how it is stopped.
 * Shared by the session-era bridge (one child per session) and the 2026-07-28 bridge (one
 * child per route).
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import type { Readable } from "node:stream";
import { ReadBuffer, serializeMessage } from "@modelcontextprotocol/sdk/shared/stdio.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import type { Logger } from "../log.js";

export interface ChildCommand {
  /** argv; `command[0]` is resolved on the child's PATH. */
  command: readonly string[];
  /** The child's whole environment, plus PATH (the gateway's own when the route sets none). */
  env: Readonly<Record<string, string>>;
  cwd?: string;
}

const KILL_GRACE_MS = 2_000;
/** Longer stderr lines are cut: a child must not make the gateway buffer without bound. */
const STDERR_LINE_MAX = 8 * 1024;

/**
 * Starts the server. Only the route's env: the gateway's own environment (its secrets) never
 * reaches a child. In a process group of its own, so that a launcher's children (npx starts
 * node, a shell script its commands) are signalled with it and none outlives it.
 */
export function spawnMcpServer({
  command,
  env,
  cwd,
}: ChildCommand): ChildProcessWithoutNullStreams {
  const child = spawn(command[0] ?? "", command.slice(1), {
    env: { ...env, PATH: env.PATH ?? process.env.PATH },
    cwd,
    stdio: ["pipe", "pipe", "pipe"],
    detached: true,
  });
  child.once("exit", () => signalGroup(child, "SIGTERM"));
  // A failed write (EPIPE once the child is gone) is reported by the child's exit instead.
  child.stdin.on("error", () => {});
  return child;
}

export function writeMessage(child: ChildProcessWithoutNullStreams, message: JSONRPCMessage) {
  child.stdin.write(serializeMessage(message));
}

/** Calls `onMessage` for each newline-delimited JSON-RPC message on the child's stdout. */
export function readMessages(
  child: ChildProcessWithoutNullStreams,
  onMessage: (message: JSONRPCMessage) => void,
  log: Logger,
  route: string,
): void {
  const frames = new ReadBuffer();
  child.stdout.on("data", (chunk: Buffer) => {
    try {
      frames.append(chunk);
      for (let message = frames.readMessage(); message; message = frames.readMessage()) {
        onMessage(message);
      }
    } catch (error) {
      log.warn({ route, pid: child.pid, err: error }, "stdio upstream wrote no JSON-RPC");
    }
  });
}

/** Each stderr line of the child is a log line at info, with the route and pid. */
export function logStderr(child: ChildProcessWithoutNullStreams, log: Logger, route: string) {
  forEachLine(child.stderr, (line) => log.info({ route, pid: child.pid, stream: "stderr" }, line));
}

/** Ends stdin, then SIGTERM to the group, SIGKILL after a grace period. */
export function stopChild(child: ChildProcessWithoutNullStreams): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.stdin.end();
  signalGroup(child, "SIGTERM");
  const force = setTimeout(() => signalGroup(child, "SIGKILL"), KILL_GRACE_MS).unref();
  child.once("exit", () => clearTimeout(force));
}

/** Signals the child's process group; the child alone when the group is gone. */
function signalGroup(child: ChildProcessWithoutNullStreams, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    child.kill(signal);
  }
}

function forEachLine(stream: Readable, onLine: (line: string) => void): void {
  let partial = "";
  let discarding = false;
  const emit = (line: string) => {
    const text = line.slice(0, STDERR_LINE_MAX).replace(/\r$/, "");
    if (text) onLine(text);
  };
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    const lines = (partial + chunk).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      // The rest of a line already cut is dropped.
      if (discarding) discarding = false;
      else emit(line);
    }
    if (partial.length > STDERR_LINE_MAX) {
      if (!discarding) emit(partial);
      partial = "";
      discarding = true;
    }
  });
  stream.on("end", () => {
    if (!discarding) emit(partial);
  });
}
