/**
 * The JSONL audit file. Lines are queued in memory and written by one asynchronous writer,
 * so the request path never waits on the disk and lines never interleave. SIGHUP reopens the
 * file (logrotate's rename + HUP); shutdown flushes what is queued.
 */
import { type FileHandle, open } from "node:fs/promises";
import type { Logger } from "pino";
import { type AuditRecord, formatAuditLine } from "./record.js";

export interface AuditLogOptions {
  log: Logger;
  /** Lines kept while the file cannot be written; older ones are dropped past it. Default 100,000. */
  maxQueuedLines?: number;
  /** Delay before retrying a failed write. Default 1s. */
  retryDelayMs?: number;
  /** Called on every failed write (metrics). */
  onWriteError?: (error: Error) => void;
}

export class AuditLog {
  #path: string;
  #handle: FileHandle;
  #queue: string[] = [];
  #writing: Promise<void> | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #failing = false;
  #dropped = 0;
  readonly #log: Logger;
  readonly #maxQueuedLines: number;
  readonly #retryDelayMs: number;
  readonly #onWriteError: AuditLogOptions["onWriteError"];

  private constructor(path: string, handle: FileHandle, options: AuditLogOptions) {
    this.#path = path;
    this.#handle = handle;
    this.#log = options.log;
    this.#maxQueuedLines = options.maxQueuedLines ?? 100_000;
    this.#retryDelayMs = options.retryDelayMs ?? 1_000;
    this.#onWriteError = options.onWriteError;
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

  write(record: AuditRecord): void {
    if (this.#queue.length >= this.#maxQueuedLines) {
      this.#queue.shift();
      this.#dropped++;
    }
    this.#queue.push(formatAuditLine(record));
    if (!this.#writing && !this.#retryTimer) this.#writing = this.#drain();
  }

  /** Resolves once every line queued so far has been written (or has failed to be). */
  async flush(): Promise<void> {
    if (this.#retryTimer) {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
      this.#writing = this.#drain();
    }
    while (this.#writing) await this.#writing;
  }

  /**
   * Opens `path` (the same one after logrotate, or a new one from a reload) and swaps it in.
   * When it cannot be opened, the current file stays in use and the error is thrown.
   */
  async reopen(path: string = this.#path): Promise<void> {
    const handle = await openForAppend(path);
    while (this.#writing) await this.#writing;
    const previous = this.#handle;
    this.#handle = handle;
    this.#path = path;
    await previous
      .close()
      .catch((error: Error) => this.#log.warn({ err: error }, "audit: close failed"));
    // Lines the previous file refused are written to the new one now, not at the next retry.
    if (this.#retryTimer) {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
    }
    if (this.#queue.length > 0 && !this.#writing) this.#writing = this.#drain();
  }

  async close(): Promise<void> {
    await this.flush();
    await this.#handle.close();
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const lines = this.#queue;
        this.#queue = [];
        try {
          await writeAll(this.#handle, Buffer.from(lines.join("")));
        } catch (error) {
          this.#queue = [...lines, ...this.#queue].slice(-this.#maxQueuedLines);
          this.#failed(error as Error);
          return;
        }
        if (this.#failing) this.#recovered();
      }
    } finally {
      this.#writing = undefined;
    }
  }

  #failed(error: Error): void {
    this.#onWriteError?.(error);
    if (!this.#failing) {
      this.#failing = true;
      this.#log.error(
        { err: error, path: this.#path, queued: this.#queue.length },
        "audit write failed: lines are kept in memory and retried",
      );
    }
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#writing = this.#drain();
    }, this.#retryDelayMs);
    this.#retryTimer.unref();
  }

  #recovered(): void {
    this.#failing = false;
    this.#log.warn({ path: this.#path, dropped: this.#dropped }, "audit writes recovered");
    this.#dropped = 0;
  }
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
