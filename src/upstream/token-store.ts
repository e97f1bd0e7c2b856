/**
 * Upstream tokens a user delegated to the gateway (`upstream.auth` type `authorization_code`),
 * per route and caller, sealed (AES-256-GCM, `secrets.encryption_key`) before they touch the
 * disk: one SQLite file in `secrets.state_dir` (`node:sqlite`, Node 22.5+), or memory only on a
 * Node without it. Every token is read into memory when the store opens, so a request never
 * reads the file; a write (a user connects, a token is refreshed) is one small statement.
 */
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { sqliteAvailable } from "../authorization-server/store.js";
import type { Component } from "../runtime/usage-pool.js";
import type { SecretBox } from "../secrets/cipher.js";

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

export class TokenStore implements Component {
  readonly #box: SecretBox;
  readonly #tokens = new Map<string, TokenSet>();
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

  put(route: string, subject: string, token: TokenSet): void {
    this.#tokens.set(keyOf(route, subject), token);
    this.#put?.run(route, subject, this.#box.seal(JSON.stringify(token)));
  }

  delete(route: string, subject: string): void {
    this.#tokens.delete(keyOf(route, subject));
    this.#delete?.run(route, subject);
  }

  close(): void {
    this.#db?.close();
  }
}

function keyOf(route: string, subject: string): string {
  return `${route.length}:${route}${subject}`;
}
