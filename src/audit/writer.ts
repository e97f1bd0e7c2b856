/**
 * The JSONL audit file. Lines are queued in memory and written in batches by one asynchronous
 * writer, so the request path never waits on the disk and lines never interleave. A batch is
 * written `flushIntervalMs` after its first line, or at once when it reaches `maxBatchBytes`:
 * one write per request would cost more CPU than the proxying itself. SIGHUP reopens the file
 * (logrotate's rename + HUP); shutdown flushes what is queued.
 */
import { type FileHandle, open } from "node:fs/promises";
import type { Logger } from "pino";
import { type AuditRecord, formatAuditLine } from "./record.js";

export interface AuditLogOptions {
  log: Logger;
  /** Longest a line waits in memory before it is written. Default 50ms. */
  flushIntervalMs?: number;
  /** A batch this large is written without waiting for the interval. Default 64 KiB. */
  maxBatchBytes?: number;
  /** Lines kept while the file cannot be written; older ones are dropped past it. Default 100,000. */
  maxQueuedLines?: number;
  /** Delay before retrying a failed write. Default 1s. */
  retryDelayMs?: number;
  /** Called on every failed write (metrics). */
  onWriteError?: (error: Error) => void;
  /** Called with the number of records given up on: dropped from a full queue, or at close. */
  onDropped?: (count: number) => void;
}

export class AuditLog {
  #path: string;
  #handle: FileHandle;
  #queue: string[] = [];
  #queuedBytes = 0;
  #writing: Promise<void> | undefined;
  /** The next batch write, or the next retry while writes fail. */
  #timer: NodeJS.Timeout | undefined;
  #failing = false;
  /** The error of the failing writes, while `#failing`. */
  #lastError: Error | undefined;
  #dropped = 0;
  readonly #log: Logger;
  readonly #flushIntervalMs: number;
  readonly #maxBatchBytes: number;
  readonly #maxQueuedLines: number;
  readonly #retryDelayMs: number;
  readonly #onWriteError: AuditLogOptions["onWriteError"];
  readonly #onDropped: AuditLogOptions["onDropped"];

  private constructor(path: string, handle: FileHandle, options: AuditLogOptions) {
    this.#path = path;
    this.#handle = handle;
    this.#log = options.log;
    this.#flushIntervalMs = options.flushIntervalMs ?? 50;
    this.#maxBatchBytes = options.maxBatchBytes ?? 64 * 1024;
    this.#maxQueuedLines = options.maxQueuedLines ?? 100_000;
    this.#retryDelayMs = options.retryDelayMs ?? 1_000;
    this.#onWriteError = options.onWriteError;
    this.#onDropped = options.onDropped;
  }

  /** Opens (creating, mode 0640) the file for appending; throws when it cannot. */
  static async open(path: string, options: AuditLogOptions): Promise<AuditLog> {
    return new AuditLog(path, await openForAppend(path), options);
  }

  get path(): string {
    return this.#path;
  }

  /** False while writes fail; `audit.on_error: fail_closed` refuses requests then. */
  get healthy(): boolean {
    return !this.#failing;
  }

  /** Why writes fail, while they do (`ENOSPC: no space left on device, write`). */
  get failure(): string | undefined {
    return this.#failing ? this.#lastError?.message : undefined;
  }

  write(record: AuditRecord): void {
    if (this.#queue.length >= this.#maxQueuedLines) {
      this.#queuedBytes -= this.#queue.shift()?.length ?? 0;
      this.#dropped++;
      this.#onDropped?.(1);
    }
    const line = formatAuditLine(record);
    this.#queue.push(line);
    this.#queuedBytes += line.length;
    if (this.#writing || this.#failing) return;
    if (this.#queuedBytes >= this.#maxBatchBytes) this.#writeNow();
    else this.#timer ??= unrefTimer(() => this.#writeNow(), this.#flushIntervalMs);
  }

  /** Resolves once every line queued so far has been written (or has failed to be). */
  async flush(): Promise<void> {
    while (this.#writing) await this.#writing;
    if (this.#queue.length > 0) this.#writeNow(true);
    while (this.#writing) await this.#writing;
  }

  /**
   * Opens `path` (the same one after logrotate, or a new one from a reload) and swaps it in.
   * When it cannot be opened, the current file stays in use and the error is thrown.
   */
  async reopen(path: string = this.#path): Promise<void> {
    const handle = await openForAppend(path);
    // Queued lines belong to the file being rotated away, unless that file refuses writes.
    if (this.#failing) while (this.#writing) await this.#writing;
    else await this.flush();
    const previous = this.#handle;
    this.#handle = handle;
    this.#path = path;
    await previous
      .close()
      .catch((error: Error) => this.#log.warn({ err: error }, "audit: close failed"));
    // Lines the previous file refused are written to the new one now, not at the next retry.
    if (this.#failing && this.#queue.length > 0) this.#writeNow(true);
  }

  /**
   * Writes what is queued and closes the file. Records that still cannot be written are lost
   * with the process: their number is logged and counted, so that the loss is never silent.
   */
  async close(): Promise<void> {
    await this.flush();
    clearTimeout(this.#timer);
    const unwritten = this.#queue.length;
    if (unwritten > 0 || this.#dropped > 0) {
      this.#onDropped?.(unwritten);
      this.#log.error(
        {
          path: this.#path,
          unwritten,
          dropped_earlier: this.#dropped,
          cause: this.#lastError?.message,
        },
        `${unwritten + this.#dropped} audit records not written`,
      );
      this.#queue = [];
    }
    await this.#handle.close().catch(() => {});
  }

  /**
   * Writes the queued lines. Lines queued during the write wait for their own interval unless
   * they already fill a batch, or `all` asks for everything (flush, retry): writing again the
   * moment a write returns would put a disk write, and its thread-pool round trip, behind every
   * few requests under load.
   */
  #writeNow(all = false): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#writing = this.#drain(all);
  }

  async #drain(all: boolean): Promise<void> {
    try {
      do {
        const lines = this.#queue;
        this.#queue = [];
        this.#queuedBytes = 0;
        try {
          await writeAll(this.#handle, Buffer.from(lines.join("")));
        } catch (error) {
          this.#queue = [...lines, ...this.#queue].slice(-this.#maxQueuedLines);
          this.#queuedBytes = this.#queue.reduce((bytes, line) => bytes + line.length, 0);
          this.#failed(error as Error);
          return;
        }
        if (this.#failing) this.#recovered();
      } while (this.#queue.length > 0 && (all || this.#queuedBytes >= this.#maxBatchBytes));
    } finally {
      this.#writing = undefined;
    }
    if (this.#queue.length > 0 && !this.#failing) {
      this.#timer ??= unrefTimer(() => this.#writeNow(), this.#flushIntervalMs);
    }
  }

  #failed(error: Error): void {
    this.#onWriteError?.(error);
    this.#lastError = error;
    if (!this.#failing) {
      this.#failing = true;
      this.#log.error(
        { err: error, path: this.#path, queued: this.#queue.length },
        "audit write failed: lines are kept in memory and retried",
      );
    }
    this.#timer = unrefTimer(() => this.#writeNow(true), this.#retryDelayMs);
  }

  #recovered(): void {
    this.#failing = false;
    this.#log.warn({ path: this.#path, dropped: this.#dropped }, "audit writes recovered");
    this.#dropped = 0;
  }
}

function unrefTimer(callback: () => void, delayMs: number): NodeJS.Timeout {
  const timer = setTimeout(callback, delayMs);
  timer.unref();
  return timer;
}

async function openForAppend(path: string): Promise<FileHandle> {
  return open(path, "a", 0o640);
}

async function writeAll(handle: FileHandle, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await handle.write(data, offset, data.length - offset);
    offset += bytesWritten;
  }
}
