/**
 * The shared store on Redis (`store: {type: redis, url}`): one connection per process, kept
 * across reloads that leave the store's settings as they were (a usage-pool component), on
 * which state that several replicas must share lives: the rate limits' buckets. A command
 * fails fast rather than waits: while Redis is away nothing queues, each command fails at once
 * (or after `timeout`), and the caller goes on without it. The connection comes back by
 * itself; its state changes are logged once each, never the URL's credentials.
 */
import { Redis } from "ioredis";
import type { Logger } from "pino";
import type { Component } from "../runtime/usage-pool.js";

export interface RedisStoreSettings {
  url: string;
  /** Put before every key, so that several gateways (or other programs) share one Redis. */
  keyPrefix: string;
  /** Milliseconds a command may take. */
  timeout: number;
}

/** Longest wait between two attempts to reconnect. */
const MAX_RECONNECT_DELAY_MS = 5_000;

/** Failed commands are logged once in this long, with how many failed. */
const FAILURE_LOG_INTERVAL_MS = 60_000;

export class RedisStore implements Component {
  readonly client: Redis;
  readonly keyPrefix: string;
  /** host:port, for logs: the URL without its credentials. */
  readonly where: string;
  readonly #log: Logger;
  readonly #onFailure: (() => void) | undefined;
  #up: boolean | undefined;
  #closed = false;
  #failures = 0;
  #failureLoggedAt = Number.NEGATIVE_INFINITY;

  /** `onFailure`: each command that failed or timed out (mcpgw_store_errors_total). */
  constructor(settings: RedisStoreSettings, log: Logger, onFailure?: () => void) {
    this.#onFailure = onFailure;
    const url = new URL(settings.url);
    this.where = `${url.hostname}:${url.port || "6379"}`;
    this.keyPrefix = settings.keyPrefix;
    this.#log = log;
    this.client = new Redis(settings.url, {
      lazyConnect: true,
      // Fail at once while disconnected: a request must not wait for Redis to come back.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: settings.timeout,
      connectTimeout: Math.max(1_000, settings.timeout),
      retryStrategy: (attempt) => Math.min(attempt * 100, MAX_RECONNECT_DELAY_MS),
      connectionName: "mcpgw",
      ...(url.protocol === "rediss:" && { tls: { servername: url.hostname } }),
    });
    this.client.on("ready", () => this.#state(true));
    this.client.on("error", (error: Error) => this.#state(false, error));
    this.client.on("close", () => this.#state(false));
  }

  /**
   * Connects and waits until the connection is ready or has failed once; either way it goes on
   * reconnecting in the background, so a gateway starts while Redis is away.
   */
  async connect(): Promise<void> {
    await this.client.connect().catch(() => {});
  }

  get up(): boolean {
    return this.#up === true;
  }

  /**
   * A command failed: counted, and logged at most once a minute (while Redis is away, every
   * request fails one).
   */
  failed(error: unknown): void {
    this.#onFailure?.();
    this.#failures++;
    const now = performance.now();
    if (now - this.#failureLoggedAt < FAILURE_LOG_INTERVAL_MS) return;
    this.#log.warn(
      {
        store: "redis",
        where: this.where,
        failures: this.#failures,
        err: error instanceof Error ? error.message : String(error),
      },
      "store: redis commands failed; requests went on without it",
    );
    this.#failureLoggedAt = now;
    this.#failures = 0;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.client.disconnect(false);
  }

  #state(up: boolean, error?: Error): void {
    if (this.#up === up || this.#closed) return;
    const first = this.#up === undefined;
    this.#up = up;
    if (up) {
      this.#log.info({ store: "redis", where: this.where }, "store: connected to redis");
    } else if (!first || error) {
      this.#log.warn(
        { store: "redis", where: this.where, err: error?.message },
        "store: redis is unreachable; what depends on it goes on without it until it is back",
      );
    }
  }
}
