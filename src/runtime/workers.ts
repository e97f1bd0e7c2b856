/**
 * `workers: N`: N worker processes (node:cluster) serve the port, each a whole gateway with its
 * own generation, caches and connections; the primary serves nothing and speaks for all:
 *
 * - signals: SIGHUP reloads every worker and the primary logs one outcome ("config reloaded"
 *   when all applied it; else "config reload failed", the workers that failed keeping their
 *   generation); SIGUSR1 reopens every worker's audit file; SIGTERM / SIGINT drain every worker,
 *   then the primary exits;
 * - `reload.watch`: the primary watches the file, so a change is one reload for all;
 * - `/metrics`: a scrape lands on any worker, which asks the primary for every worker's
 *   exposition and answers with their merge (mergeExpositions);
 * - a worker that dies is replaced (after a pause when it dies young, so that a crash loop does
 *   not spin).
 *
 * The audit file is one, appended to by every worker: each write is whole lines, and on Linux
 * appends (O_APPEND) to a local file never interleave, so lines stay whole.
 */
import cluster, { type Worker } from "node:cluster";
import { availableParallelism } from "node:os";
import type { Logger } from "../log.js";
import { mergeExpositions } from "../telemetry/merge-exposition.js";
import type { ReloadResult, ReloadTrigger, WorkerRole } from "./gateway.js";

/** Messages from the primary to a worker. */
export type ToWorker =
  | { mcpgw: "reload"; id: number; trigger: ReloadTrigger }
  | { mcpgw: "reopen-audit" }
  | { mcpgw: "collect"; id: number }
  | { mcpgw: "metrics"; id: number; body: string };

/** Messages from a worker to the primary. */
export type ToPrimary =
  | { mcpgw: "ready"; address: string; port: number; url: string; generation: number }
  | { mcpgw: "reloaded"; id: number; result: ReloadResult | null }
  | { mcpgw: "collected"; id: number; body: string }
  | { mcpgw: "metrics?"; id: number };

/** `workers: auto` is one per core the process may use. */
export function workerCount(setting: "auto" | number): number {
  return setting === "auto" ? availableParallelism() : setting;
}

/** How long the primary waits for the workers' answers to a reload, and to a scrape. */
const RELOAD_TIMEOUT_MS = 120_000;
const COLLECT_TIMEOUT_MS = 5_000;
/** A worker that dies sooner than this after its start is replaced after a pause. */
const YOUNG_MS = 10_000;
const RESPAWN_PAUSE_MS = 1_000;

interface Slot {
  worker: Worker;
  /** The slot's number, 1..N, kept by its replacements (the `worker` field of their logs). */
  index: number;
  ready: boolean;
  startedAt: number;
}

/** Where the workers listen, from the first one ready. */
export interface Listening {
  address: string;
  port: number;
  url: string;
  generation: number;
}

export class Primary {
  readonly #log: Logger;
  readonly #count: number;
  readonly #slots = new Map<number, Slot>();
  #stopping = false;
  #nextId = 1;
  readonly #waiting = new Map<number, { answers: Map<number, unknown>; done: () => void }>();
  #reloading: Promise<void> = Promise.resolve();

  constructor(count: number, log: Logger) {
    this.#count = count;
    this.#log = log;
  }

  get workers(): number {
    return [...this.#slots.values()].filter((slot) => slot.ready).length;
  }

  /**
   * Forks the workers and resolves once all are listening; rejects with the exit code of the
   * first that exits before (a config error is 78 there as here), after stopping the others.
   */
  async start(): Promise<Listening> {
    return new Promise<Listening>((resolve, reject) => {
      let first: Listening | undefined;
      const onReady = (listening: Listening) => {
        first ??= listening;
        if (this.workers === this.#count) resolve(first);
      };
      const onEarlyExit = (code: number) => {
        if (this.#stopping) return;
        this.#stopping = true;
        for (const slot of this.#slots.values()) slot.worker.process.kill("SIGTERM");
        reject(new WorkerStartError(code));
      };
      for (let index = 1; index <= this.#count; index++) this.#fork(index, onReady, onEarlyExit);
    });
  }

  /** Reloads every worker; one log line says how it went. Reloads run one at a time. */
  reload(trigger: ReloadTrigger): Promise<void> {
    this.#reloading = this.#reloading.then(() => this.#reloadAll(trigger));
    return this.#reloading;
  }

  reopenAudit(): void {
    this.#broadcast({ mcpgw: "reopen-audit" });
    this.#log.info({ trigger: "SIGUSR1", workers: this.workers }, "audit file reopened");
  }

  /** SIGTERM to every worker (each drains as a lone gateway does); resolves once all exited. */
  async stop(signal: NodeJS.Signals, timeoutMs: number): Promise<void> {
    this.#stopping = true;
    this.#log.info({ signal, workers: this.#slots.size }, "shutting down");
    const exits = [...this.#slots.values()].map(
      (slot) =>
        new Promise<void>((resolve) => {
          if (slot.worker.isDead()) return resolve();
          slot.worker.once("exit", () => resolve());
          slot.worker.process.kill("SIGTERM");
        }),
    );
    // A worker still there well after its own drain deadline is stuck: killed.
    const deadline = setTimeout(() => {
      for (const slot of this.#slots.values())
        if (!slot.worker.isDead()) slot.worker.kill("SIGKILL");
    }, timeoutMs + 10_000);
    await Promise.all(exits);
    clearTimeout(deadline);
    this.#log.info("stopped");
  }

  #fork(
    index: number,
    onReady: (listening: Listening) => void,
    onEarlyExit: (code: number) => void,
  ): void {
    const worker = cluster.fork({ MCPGW_WORKER: String(index) });
    const slot: Slot = { worker, index, ready: false, startedAt: performance.now() };
    this.#slots.set(worker.id, slot);
    worker.on("message", (message: ToPrimary) => {
      if (message?.mcpgw === "ready") {
        slot.ready = true;
        onReady(message);
      } else if (message?.mcpgw === "reloaded") {
        this.#answer(message.id, worker.id, message.result);
      } else if (message?.mcpgw === "collected") {
        this.#answer(message.id, worker.id, message.body);
      } else if (message?.mcpgw === "metrics?") {
        void this.#collect().then((body) => {
          if (worker.isConnected()) worker.send({ mcpgw: "metrics", id: message.id, body });
        });
      }
    });
    worker.on("exit", (code, signal) => {
      this.#slots.delete(worker.id);
      // A worker that has gone answers nothing: the operations waiting on it go on without it.
      for (const waiting of this.#waiting.values()) waiting.done();
      if (this.#stopping) return;
      if (!slot.ready) {
        onEarlyExit(code ?? 1);
        return;
      }
      const young = performance.now() - slot.startedAt < YOUNG_MS;
      this.#log.error(
        { worker: index, pid: worker.process.pid, code, signal },
        `worker ${index} exited; starting another${young ? ` in ${RESPAWN_PAUSE_MS} ms` : ""}`,
      );
      const respawn = () => {
        if (this.#stopping) return;
        this.#fork(
          index,
          () => this.#log.info({ worker: index, workers: this.workers }, "worker replaced"),
          (exitCode) =>
            this.#log.error(
              { worker: index, code: exitCode },
              `worker ${index} could not start; retrying`,
            ),
        );
      };
      if (young) setTimeout(respawn, RESPAWN_PAUSE_MS).unref();
      else respawn();
    });
  }

  async #reloadAll(trigger: ReloadTrigger): Promise<void> {
    const id = this.#nextId++;
    const answers = await this.#ask({ mcpgw: "reload", id, trigger }, RELOAD_TIMEOUT_MS);
    const results = [...answers.values()] as (ReloadResult | null)[];
    const outcomes = results.filter((result): result is ReloadResult => result !== null);
    if (outcomes.length === 0) return;
    const failed = outcomes.filter((result) => result.outcome === "failed");
    const missing = this.workers - answers.size;
    if (failed.length > 0 || missing > 0) {
      const first = failed[0];
      const reason =
        first?.outcome === "failed" ? first.reason : `${missing} worker(s) did not answer`;
      this.#log.error(
        {
          trigger,
          workers: this.workers,
          failed_workers: failed.length + missing,
          ...(first?.outcome === "failed" && first.problems && { problems: first.problems }),
        },
        `config reload failed: ${reason}`,
      );
      return;
    }
    const reloaded = outcomes.find((result) => result.outcome === "reloaded");
    if (reloaded?.outcome === "reloaded") {
      this.#log.info(
        {
          trigger,
          generation: reloaded.generation,
          changed: reloaded.changed,
          workers: this.workers,
        },
        "config reloaded",
      );
    } else {
      this.#log.info(
        { trigger, generation: outcomes[0]?.generation, workers: this.workers },
        "config unchanged",
      );
    }
  }

  /** Every worker's exposition, merged. */
  async #collect(): Promise<string> {
    const id = this.#nextId++;
    const answers = await this.#ask({ mcpgw: "collect", id }, COLLECT_TIMEOUT_MS);
    const own = [
      "# HELP mcpgw_workers Worker processes serving (workers: N), as the primary counts them.",
      "# TYPE mcpgw_workers gauge",
      `mcpgw_workers ${this.workers}`,
      "",
    ].join("\n");
    return mergeExpositions([...(answers.values() as Iterable<string>), own]);
  }

  /** Sends `message` to every ready worker; resolves with their answers by worker id. */
  #ask(message: ToWorker & { id: number }, timeoutMs: number): Promise<Map<number, unknown>> {
    const answers = new Map<number, unknown>();
    return new Promise((resolve) => {
      const asked = [...this.#slots.values()].filter((slot) => slot.ready);
      const done = () => {
        const pending = asked.filter(
          (slot) => !answers.has(slot.worker.id) && !slot.worker.isDead(),
        );
        if (pending.length > 0) return;
        clearTimeout(timer);
        this.#waiting.delete(message.id);
        resolve(answers);
      };
      const timer = setTimeout(() => {
        this.#waiting.delete(message.id);
        resolve(answers);
      }, timeoutMs);
      this.#waiting.set(message.id, { answers, done });
      for (const slot of asked) if (slot.worker.isConnected()) slot.worker.send(message);
      done();
    });
  }

  #answer(id: number, workerId: number, value: unknown): void {
    const waiting = this.#waiting.get(id);
    if (waiting === undefined) return;
    waiting.answers.set(workerId, value);
    waiting.done();
  }

  #broadcast(message: ToWorker): void {
    for (const slot of this.#slots.values()) {
      if (slot.ready && slot.worker.isConnected()) slot.worker.send(message);
    }
  }
}

/** A worker exited before it listened: the primary exits with its code. */
export class WorkerStartError extends Error {
  readonly code: number;

  constructor(code: number) {
    super(`a worker exited with code ${code} before it was listening`);
    this.code = code;
  }
}

/**
 * The worker's side: answers the primary's requests with `gateway`'s, and asks it for the
 * merged metrics. `process.send` exists in a worker (its IPC channel to the primary).
 */
export class WorkerChannel implements WorkerRole {
  #nextId = 1;
  readonly #pending = new Map<number, (body: string) => void>();

  constructor(
    handlers: {
      reload(trigger: ReloadTrigger): Promise<ReloadResult | undefined>;
      reopenAudit(): Promise<void>;
      exposition(): Promise<string>;
    },
    log: Logger,
  ) {
    process.on("message", (message: ToWorker) => {
      if (message?.mcpgw === "reload") {
        void handlers
          .reload(message.trigger)
          .then((result) => send({ mcpgw: "reloaded", id: message.id, result: result ?? null }));
      } else if (message?.mcpgw === "reopen-audit") {
        void handlers.reopenAudit();
      } else if (message?.mcpgw === "collect") {
        void handlers.exposition().then(
          (body) => send({ mcpgw: "collected", id: message.id, body }),
          (error: unknown) => {
            log.error({ err: error }, "metrics: collection failed");
            send({ mcpgw: "collected", id: message.id, body: "" });
          },
        );
      } else if (message?.mcpgw === "metrics") {
        this.#pending.get(message.id)?.(message.body);
        this.#pending.delete(message.id);
      }
    });
  }

  ready(listening: Listening): void {
    send({ mcpgw: "ready", ...listening });
  }

  /** The merge of every worker's exposition; this one's alone if the primary does not answer. */
  metrics(local: string): Promise<string> {
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        resolve(local);
      }, COLLECT_TIMEOUT_MS * 2);
      this.#pending.set(id, (body) => {
        clearTimeout(timer);
        resolve(body);
      });
      send({ mcpgw: "metrics?", id });
    });
  }
}

function send(message: ToPrimary): void {
  if (process.connected) process.send?.(message);
}
