/**
 * Upstream tokens a user delegated to the gateway (`upstream.auth` type `authorization_code`),
 * per route and caller, sealed (AES-256-GCM, `secrets.encryption_key`) before they leave the
 * process, and the connects in progress (PKCE verifier by `state`).
 *
 * - `TokenStore`: one SQLite file in `secrets.state_dir` (`node:sqlite`, Node 22.5+), or memory
 *   only on a Node without it. Every token is read into memory when the store opens, so a
 *   request never reads the file; a write is one small statement. One process.
 * - `RedisTokenStore` (`store: {type: redis}`): every replica sees every token and every
 *   connect in progress (a callback may reach another replica than the connect), and a refresh
 *   is done by one replica at a time (a lock), so a rotated refresh token is never used twice.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { sqliteAvailable } from "../authorization-server/store.js";
import { setBounded } from "../lib/bounded-map.js";
import type { Component } from "../runtime/usage-pool.js";
import type { SecretBox } from "../secrets/cipher.js";
import type { RedisStore } from "../store/redis.js";

export interface TokenSet {
  accessToken: string;
  refreshToken?: string | undefined;
  /** Epoch milliseconds; undefined when the provider did not say. */
  expiresAt?: number | undefined;
  /** When to refresh it (epoch ms): ahead of expiry by a tenth of its lifetime, 5 s to 1 min. */
  refreshAt?: number | undefined;
}

interface Statement {
  run(...values: unknown[]): unknown;
  all(...values: unknown[]): Record<string, unknown>[];
}

interface Database {
  exec(sql: string): void;
  prepare(sql: string): Statement;
  close(): void;
}

export const TOKEN_FILE = "upstream-tokens.sqlite";

/** A connect in progress, by its `state`. */
export interface PendingConnect {
  route: string;
  subject: string;
  verifier: string;
}

export interface DelegatedTokens extends Component {
  /** The caller's tokens: at once from memory, or a promise while the shared store is asked. */
  get(route: string, subject: string): TokenSet | undefined | Promise<TokenSet | undefined>;
  /** The tokens as the shared store has them now (another replica may have refreshed them). */
  latest(route: string, subject: string): Promise<TokenSet | undefined>;
  put(route: string, subject: string, token: TokenSet | undefined): Promise<void>;
  /**
   * Runs `refresh` while holding the caller's refresh lock; undefined when another replica
   * holds it (then `latest` soon has its result).
   */
  whileLocked<T>(route: string, subject: string, refresh: () => Promise<T>): Promise<T | undefined>;
  addPending(state: string, pending: PendingConnect, ttlMs: number): Promise<void>;
  /** The connect of `state`, once: a second use finds nothing. */
  takePending(state: string): Promise<PendingConnect | undefined>;
}

const MAX_PENDING = 10_000;

export class TokenStore implements DelegatedTokens {
  readonly #box: SecretBox;
  readonly #tokens = new Map<string, TokenSet>();
  readonly #pending = new Map<string, PendingConnect & { expiresAt: number }>();
  readonly #db: Database | undefined;
  readonly #put: Statement | undefined;
  readonly #delete: Statement | undefined;
  /** Where the tokens are kept: the file, or undefined for memory. */
  readonly file: string | undefined;

  /** Opens (creating) the store in `stateDir`; in memory when this Node has no node:sqlite. */
  constructor(stateDir: string | undefined, box: SecretBox) {
    this.#box = box;
    if (stateDir === undefined || !sqliteAvailable()) return;
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    this.file = path.join(stateDir, TOKEN_FILE);
    const { DatabaseSync } = createRequire(import.meta.url)("node:sqlite") as {
      DatabaseSync: new (file: string) => Database;
    };
    this.#db = new DatabaseSync(this.file);
    this.#db.exec(`
      PRAGMA journal_mode = WAL;
      CREATE TABLE IF NOT EXISTS tokens (
        route TEXT NOT NULL, subject TEXT NOT NULL, sealed TEXT NOT NULL,
        PRIMARY KEY (route, subject));`);
    this.#put = this.#db.prepare(
      "INSERT OR REPLACE INTO tokens (route, subject, sealed) VALUES (?, ?, ?)",
    );
    this.#delete = this.#db.prepare("DELETE FROM tokens WHERE route = ? AND subject = ?");
    for (const row of this.#db.prepare("SELECT route, subject, sealed FROM tokens").all()) {
      let token: TokenSet;
      try {
        token = JSON.parse(this.#box.openText(String(row.sealed))) as TokenSet;
      } catch (error) {
        this.#db.close();
        throw new Error(
          `${this.file}: a stored upstream token does not open: ${(error as Error).message}`,
        );
      }
      this.#tokens.set(keyOf(String(row.route), String(row.subject)), token);
    }
  }

  get(route: string, subject: string): TokenSet | undefined {
    return this.#tokens.get(keyOf(route, subject));
  }

  async latest(route: string, subject: string): Promise<TokenSet | undefined> {
    return this.get(route, subject);
  }

  async put(route: string, subject: string, token: TokenSet | undefined): Promise<void> {
    if (token === undefined) {
      this.#tokens.delete(keyOf(route, subject));
      this.#delete?.run(route, subject);
      return;
    }
    this.#tokens.set(keyOf(route, subject), token);
    this.#put?.run(route, subject, this.#box.seal(JSON.stringify(token)));
  }

  /** One process: the caller's single flight is the lock. */
  whileLocked<T>(_route: string, _subject: string, refresh: () => Promise<T>): Promise<T> {
    return refresh();
  }

  async addPending(state: string, pending: PendingConnect, ttlMs: number): Promise<void> {
    const now = Date.now();
    for (const [key, entry] of this.#pending) if (entry.expiresAt < now) this.#pending.delete(key);
    setBounded(this.#pending, state, { ...pending, expiresAt: now + ttlMs }, MAX_PENDING);
  }

  async takePending(state: string): Promise<PendingConnect | undefined> {
    const entry = this.#pending.get(state);
    this.#pending.delete(state);
    if (entry === undefined || entry.expiresAt < Date.now()) return undefined;
    const { expiresAt: _, ...pending } = entry;
    return pending;
  }

  close(): void {
    this.#db?.close();
  }
}

function keyOf(route: string, subject: string): string {
  return `${route.length}:${route}${subject}`;
}

/** How long a refresh may hold the caller's lock. */
const LOCK_MS = 15_000;

/**
 * On the shared Redis store: `<prefix>ut:<hash of route and caller>` holds the sealed tokens,
 * `<prefix>uc:<state>` a sealed connect in progress (expiring with it), `<prefix>ul:<hash>` a
 * refresh lock. Tokens read are kept in memory; a refresh asks Redis for the latest first.
 */
export class RedisTokenStore implements DelegatedTokens {
  readonly #redis: RedisStore;
  readonly #box: SecretBox;
  readonly #tokens = new Map<string, TokenSet>();

  constructor(redis: RedisStore, box: SecretBox) {
    this.#redis = redis;
    this.#box = box;
  }

  get(route: string, subject: string): TokenSet | undefined | Promise<TokenSet | undefined> {
    return this.#tokens.get(keyOf(route, subject)) ?? this.latest(route, subject);
  }

  async latest(route: string, subject: string): Promise<TokenSet | undefined> {
    const sealed = await this.#redis.client.get(this.#key("ut", route, subject));
    const key = keyOf(route, subject);
    if (sealed === null) {
      this.#tokens.delete(key);
      return undefined;
    }
    const token = JSON.parse(this.#box.openText(sealed)) as TokenSet;
    setBounded(this.#tokens, key, token, 100_000);
    return token;
  }

  async put(route: string, subject: string, token: TokenSet | undefined): Promise<void> {
    const key = keyOf(route, subject);
    if (token === undefined) {
      this.#tokens.delete(key);
      await this.#redis.client.del(this.#key("ut", route, subject));
      return;
    }
    setBounded(this.#tokens, key, token, 100_000);
    await this.#redis.client.set(
      this.#key("ut", route, subject),
      this.#box.seal(JSON.stringify(token)),
    );
  }

  async whileLocked<T>(
    route: string,
    subject: string,
    refresh: () => Promise<T>,
  ): Promise<T | undefined> {
    const lock = this.#key("ul", route, subject);
    const nonce = randomBytes(12).toString("base64url");
    if ((await this.#redis.client.set(lock, nonce, "PX", LOCK_MS, "NX")) !== "OK") return undefined;
    try {
      return await refresh();
    } finally {
      // Only our own lock: after LOCK_MS it may be another replica's.
      await this.#redis.client.eval(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        1,
        lock,
        nonce,
      );
    }
  }

  async addPending(state: string, pending: PendingConnect, ttlMs: number): Promise<void> {
    const key = `${this.#redis.keyPrefix}uc:${state}`;
    await this.#redis.client.set(key, this.#box.seal(JSON.stringify(pending)), "PX", ttlMs);
  }

  async takePending(state: string): Promise<PendingConnect | undefined> {
    const sealed = await this.#redis.client.getdel(`${this.#redis.keyPrefix}uc:${state}`);
    return sealed === null ? undefined : (JSON.parse(this.#box.openText(sealed)) as PendingConnect);
  }

  close(): void {}

  #key(kind: string, route: string, subject: string): string {
    const digest = createHash("sha256").update(keyOf(route, subject)).digest("base64url");
    return `${this.#redis.keyPrefix}${kind}:${digest}`;
  }
}
