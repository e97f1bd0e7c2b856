/**
 * Child processes of a benchmark run. Every server under test runs in its own process so its
 * CPU time can be read from /proc on its own, and every one of them is registered here so a
 * run that fails half-way, times out or is interrupted leaves nothing behind.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { BENCH_NODE } from "./node.js";

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Enough of a crashed process's output to see why, without keeping a debug log in memory. */
const TAIL_LINES = 20;

function pushTail(tail: string[], line: string): void {
  tail.push(line);
  if (tail.length > TAIL_LINES) tail.shift();
}

function describeExit({ code, signal }: ExitStatus): string {
  return signal === null ? `exit code ${code}` : `signal ${signal}`;
}

export class ServiceProcess {
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  private exitStatus: ExitStatus | undefined;
  private readonly lineListeners = new Set<(line: string) => void>();
  private readonly stdoutTail: string[] = [];
  private readonly stderrTail: string[] = [];

  constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    // Without a listener a failed spawn would be an uncaught exception instead of our error.
    child.on("error", (error) => pushTail(this.stderrTail, String(error)));
    if (child.pid === undefined) throw new Error(`${name}: the process could not be started`);
    this.pid = child.pid;
    // "close", not "exit": it comes after the last stdout line, which callers may be counting.
    this.exited = new Promise((resolve) => {
      child.once("close", (code, signal) => {
        this.exitStatus = { code, signal };
        resolve(this.exitStatus);
      });
    });
    if (child.stdout) {
      createInterface({ input: child.stdout, crlfDelay: Number.POSITIVE_INFINITY }).on(
        "line",
        (line) => {
          pushTail(this.stdoutTail, line);
          for (const listener of this.lineListeners) listener(line);
        },
      );
    }
    if (child.stderr) {
      createInterface({ input: child.stderr, crlfDelay: Number.POSITIVE_INFINITY }).on(
        "line",
        (line) => pushTail(this.stderrTail, line),
      );
    }
  }

  /** Calls `listener` with every later stdout line; returns the unsubscribe function. */
  onLine(listener: (line: string) => void): () => void {
    this.lineListeners.add(listener);
    return () => this.lineListeners.delete(listener);
  }

  /**
   * Resolves with the first stdout line that `match` maps to a value. Rejects, with the
   * process's last output, if it exits first or `timeoutMs` passes.
   */
  waitFor<T>(what: string, match: (line: string) => T | undefined, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const settle = (outcome: () => void) => {
        clearTimeout(timer);
        unsubscribe();
        outcome();
      };
      const timer = setTimeout(
        () => settle(() => reject(this.failure(`no ${what} within ${timeoutMs} ms`))),
        timeoutMs,
      );
      const unsubscribe = this.onLine((line) => {
        const value = match(line);
        if (value !== undefined) settle(() => resolve(value));
      });
      void this.exited.then((status) =>
        settle(() => reject(this.failure(`exited (${describeExit(status)}) before ${what}`))),
      );
    });
  }

  /**
   * Asks the process to stop with SIGTERM and waits; after `graceMs` it is killed. The status
   * tells the caller whether the process shut down cleanly.
   */
  async stop(graceMs: number): Promise<ExitStatus> {
    if (this.exitStatus !== undefined) return this.exitStatus;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.kill(), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends `signal` (SIGHUP: reload) while the process runs; false once it has exited. */
  signal(signal: NodeJS.Signals): boolean {
    return this.exitStatus === undefined && this.child.kill(signal);
  }

  /** SIGKILL; synchronous so it can run from a process "exit" handler. */
  kill(): void {
    if (this.exitStatus === undefined) this.child.kill("SIGKILL");
  }

  /** An Error naming the process, with its last stdout and stderr lines. */
  failure(message: string): Error {
    const sections = [`${this.name} (pid ${this.pid}): ${message}`];
    if (this.stdoutTail.length > 0)
      sections.push(`last stdout:\n  ${this.stdoutTail.join("\n  ")}`);
    if (this.stderrTail.length > 0)
      sections.push(`last stderr:\n  ${this.stderrTail.join("\n  ")}`);
    return new Error(sections.join("\n"));
  }
}

/** Tracks every process a run starts so that all of them can be killed at once. */
export class ProcessGroup {
  private readonly members = new Set<ServiceProcess>();

  /** Starts `node script args...` with stdout and stderr piped to the harness. */
  spawnNode(name: string, script: URL, args: readonly string[] = []): ServiceProcess {
    return this.spawn(name, BENCH_NODE, [fileURLToPath(script), ...args]);
  }

  /** Starts any program (HAProxy, say) the same way. */
  spawn(name: string, command: string, args: readonly string[] = []): ServiceProcess {
    const child = spawn(command, args, {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const service = new ServiceProcess(name, child);
    this.members.add(service);
    void service.exited.then(() => this.members.delete(service));
    return service;
  }

  killAll(): void {
    for (const member of this.members) member.kill();
  }
}
