/**
 * Where the authorization server keeps what outlives a request: registered clients, grants,
 * codes, refresh tokens, sessions (oidc-provider's models), and the access tokens it revoked.
 * `sqlite` (the default) is one file in `state_dir` through Node's built-in `node:sqlite`
 * (Node 22.5+), so a restart loses nothing; `memory` is for tests and throwaway demos; `redis`
 * (`redis-store.ts`) is shared by every replica.
 */
import { createRequire } from "node:module";
import path from "node:path";

/** oidc-provider's adapter interface, for one model. */
export interface ModelAdapter {
  upsert(id: string, payload: Record<string, unknown>, expiresIn?: number): Promise<void>;
  find(id: string): Promise<Record<string, unknown> | undefined>;
  findByUid(uid: string): Promise<Record<string, unknown> | undefined>;
  findByUserCode(userCode: string): Promise<Record<string, unknown> | undefined>;
  consume(id: string): Promise<void>;
  destroy(id: string): Promise<void>;
  revokeByGrantId(grantId: string): Promise<void>;
}

export interface Store {
  /** oidc-provider's `adapter` option. */
  adapter(model: string): ModelAdapter;
  /** Access tokens revoked, until they expire (ms since epoch). */
  revokedTokens(): Promise<Map<string, number>>;
  saveRevoked(jti: string, until: number): Promise<void>;
  /**
   * Revocations made elsewhere (another replica on the shared store), as they happen; a store
   * only this process writes has none.
   */
  onRevoked?(listener: (jti: string, until: number) => void): void;
  /** The access tokens a grant issued, so that revoking the grant revokes them. */
  issued(jti: string, grantId: string, until: number): Promise<void>;
  tokensOfGrant(grantId: string): Promise<[string, number][]>;
  forgetGrant(grantId: string): Promise<void>;
  /** Keeps `value` under `key` for `ttlMs`, to be taken once (a sign-in in progress). */
  putOnce(key: string, value: string, ttlMs: number): Promise<void>;
  /** The value under `key`, once: a second take finds nothing. */
  takeOnce(key: string): Promise<string | undefined>;
  close(): void | Promise<void>;
}

const MAX_ONCE = 10_000;

/**
 * What is taken once, in this process (memory and SQLite stores: a sign-in in progress is
 * minutes long, a restart may lose it).
 */
class OnceInMemory {
  readonly #entries = new Map<string, { value: string; until: number }>();

  async putOnce(key: string, value: string, ttlMs: number): Promise<void> {
    const now = Date.now();
    for (const [k, entry] of this.#entries) if (entry.until < now) this.#entries.delete(k);
    if (this.#entries.size >= MAX_ONCE) throw new Error("too many sign-ins in progress");
    this.#entries.set(key, { value, until: now + ttlMs });
  }

  async takeOnce(key: string): Promise<string | undefined> {
    const entry = this.#entries.get(key);
    this.#entries.delete(key);
    return entry === undefined || entry.until < Date.now() ? undefined : entry.value;
  }
}

export type StoreType = "sqlite" | "memory" | "redis";

/** Whether this Node has `node:sqlite` (22.5 and later). */
export function sqliteAvailable(): boolean {
  try {
    createRequire(import.meta.url)("node:sqlite");
    return true;
  } catch {
    return false;
  }
}

/** A store of this process's own: the file in `stateDir`, or memory. */
export function openStore(type: "sqlite" | "memory", stateDir: string): Store {
  return type === "sqlite"
    ? new SqliteStore(path.join(stateDir, "authorization-server.db"))
    : new MemoryStore();
}

const now = () => Math.floor(Date.now() / 1000);

class MemoryStore extends OnceInMemory implements Store {
  readonly #models = new Map<string, Record<string, unknown> & { exp?: number }>();
  readonly #revoked = new Map<string, number>();
  readonly #byGrant = new Map<string, Map<string, number>>();

  adapter(model: string): ModelAdapter {
    const store = this.#models;
    const key = (id: string) => `${model}:${id}`;
    const live = (entry: (Record<string, unknown> & { exp?: number }) | undefined) =>
      entry && (entry.exp === undefined || entry.exp > now()) ? entry : undefined;
    const findBy = (field: string, value: string) => {
      for (const [k, payload] of store) {
        if (k.startsWith(`${model}:`) && payload[field] === value) return live(payload);
      }
      return undefined;
    };
    return {
      async upsert(id, payload, expiresIn) {
        store.set(key(id), { ...payload, ...(expiresIn && { exp: now() + expiresIn }) });
      },
      async find(id) {
        return live(store.get(key(id)));
      },
      findByUid: async (uid) => findBy("uid", uid),
      findByUserCode: async (userCode) => findBy("userCode", userCode),
      async consume(id) {
        const payload = store.get(key(id));
        if (payload) payload.consumed = now();
      },
      async destroy(id) {
        store.delete(key(id));
      },
      async revokeByGrantId(grantId) {
        for (const [k, payload] of store) if (payload.grantId === grantId) store.delete(k);
      },
    };
  }

  async revokedTokens() {
    return new Map(this.#revoked);
  }

  async saveRevoked(jti: string, until: number) {
    this.#revoked.set(jti, until);
  }

  async issued(jti: string, grantId: string, until: number) {
    let tokens = this.#byGrant.get(grantId);
    if (tokens === undefined) {
      tokens = new Map();
      this.#byGrant.set(grantId, tokens);
    }
    tokens.set(jti, until);
  }

  async tokensOfGrant(grantId: string): Promise<[string, number][]> {
    return [...(this.#byGrant.get(grantId) ?? [])];
  }

  async forgetGrant(grantId: string) {
    this.#byGrant.delete(grantId);
  }

  close() {}
}

interface Statement {
  run(...values: unknown[]): unknown;
  get(...values: unknown[]): Record<string, unknown> | undefined;
  all(...values: unknown[]): Record<string, unknown>[];
}

interface Database {
  exec(sql: string): void;
  prepare(sql: string): Statement;
  close(): void;
}

/**
 * One SQLite file, written through (each write is its own statement; WAL keeps them cheap).
 * These are the authorization server's endpoints, not the MCP request path, which never
 * reads it: the revoked tokens it checks per request are held in memory.
 */
class SqliteStore extends OnceInMemory implements Store {
  readonly #db: Database;
  readonly #statements: Record<string, Statement>;
  #writes = 0;

  constructor(file: string) {
    super();
    const { DatabaseSync } = createRequire(import.meta.url)("node:sqlite") as {
      DatabaseSync: new (file: string) => Database;
    };
    this.#db = new DatabaseSync(file);
    this.#db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      CREATE TABLE IF NOT EXISTS models (
        model TEXT NOT NULL, id TEXT NOT NULL, payload TEXT NOT NULL,
        uid TEXT, user_code TEXT, grant_id TEXT, expires_at INTEGER,
        PRIMARY KEY (model, id));
      CREATE INDEX IF NOT EXISTS models_uid ON models (model, uid);
      CREATE INDEX IF NOT EXISTS models_grant ON models (grant_id);
      CREATE TABLE IF NOT EXISTS revoked (jti TEXT PRIMARY KEY, until INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS issued (
        jti TEXT PRIMARY KEY, grant_id TEXT NOT NULL, until INTEGER NOT NULL);
      CREATE INDEX IF NOT EXISTS issued_grant ON issued (grant_id);`);
    const db = this.#db;
    this.#statements = {
      upsert: db.prepare(
        "INSERT OR REPLACE INTO models (model, id, payload, uid, user_code, grant_id, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
      ),
      find: db.prepare(
        "SELECT payload FROM models WHERE model = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?)",
      ),
      findByUid: db.prepare(
        "SELECT payload FROM models WHERE model = ? AND uid = ? AND (expires_at IS NULL OR expires_at > ?)",
      ),
      findByUserCode: db.prepare(
        "SELECT payload FROM models WHERE model = ? AND user_code = ? AND (expires_at IS NULL OR expires_at > ?)",
      ),
      consume: db.prepare(
        "UPDATE models SET payload = json_set(payload, '$.consumed', ?) WHERE model = ? AND id = ?",
      ),
      destroy: db.prepare("DELETE FROM models WHERE model = ? AND id = ?"),
      revokeByGrantId: db.prepare("DELETE FROM models WHERE model = ? AND grant_id = ?"),
      sweep: db.prepare("DELETE FROM models WHERE expires_at IS NOT NULL AND expires_at < ?"),
      saveRevoked: db.prepare("INSERT OR REPLACE INTO revoked (jti, until) VALUES (?, ?)"),
      revoked: db.prepare("SELECT jti, until FROM revoked WHERE until > ?"),
      sweepRevoked: db.prepare("DELETE FROM revoked WHERE until < ?"),
      issued: db.prepare("INSERT OR REPLACE INTO issued (jti, grant_id, until) VALUES (?, ?, ?)"),
      tokensOfGrant: db.prepare("SELECT jti, until FROM issued WHERE grant_id = ?"),
      forgetGrant: db.prepare("DELETE FROM issued WHERE grant_id = ?"),
      sweepIssued: db.prepare("DELETE FROM issued WHERE until < ?"),
    };
  }

  adapter(model: string): ModelAdapter {
    const s = this.#statements as Record<string, Statement> & {
      upsert: Statement;
      find: Statement;
      findByUid: Statement;
      findByUserCode: Statement;
      consume: Statement;
      destroy: Statement;
      revokeByGrantId: Statement;
    };
    const parsed = (row: Record<string, unknown> | undefined) =>
      row === undefined ? undefined : (JSON.parse(String(row.payload)) as Record<string, unknown>);
    return {
      upsert: async (id, payload, expiresIn) => {
        s.upsert.run(
          model,
          id,
          JSON.stringify(payload),
          typeof payload.uid === "string" ? payload.uid : null,
          typeof payload.userCode === "string" ? payload.userCode : null,
          typeof payload.grantId === "string" ? payload.grantId : null,
          expiresIn ? now() + expiresIn : null,
        );
        this.#wrote();
      },
      find: async (id) => parsed(s.find.get(model, id, now())),
      findByUid: async (uid) => parsed(s.findByUid.get(model, uid, now())),
      findByUserCode: async (code) => parsed(s.findByUserCode.get(model, code, now())),
      consume: async (id) => {
        s.consume.run(now(), model, id);
      },
      destroy: async (id) => {
        s.destroy.run(model, id);
      },
      revokeByGrantId: async (grantId) => {
        s.revokeByGrantId.run(model, grantId);
      },
    };
  }

  async revokedTokens(): Promise<Map<string, number>> {
    const rows = (this.#statements.revoked as Statement).all(Date.now());
    return new Map(rows.map((row) => [String(row.jti), Number(row.until)]));
  }

  async saveRevoked(jti: string, until: number) {
    (this.#statements.saveRevoked as Statement).run(jti, until);
  }

  async issued(jti: string, grantId: string, until: number) {
    (this.#statements.issued as Statement).run(jti, grantId, until);
    this.#wrote();
  }

  async tokensOfGrant(grantId: string): Promise<[string, number][]> {
    return (this.#statements.tokensOfGrant as Statement)
      .all(grantId)
      .map((row) => [String(row.jti), Number(row.until)]);
  }

  async forgetGrant(grantId: string) {
    (this.#statements.forgetGrant as Statement).run(grantId);
  }

  close() {
    this.#db.close();
  }

  /** Every 512 writes, what has expired goes. */
  #wrote() {
    if (++this.#writes % 512 !== 0) return;
    (this.#statements.sweep as Statement).run(now());
    (this.#statements.sweepRevoked as Statement).run(Date.now());
    (this.#statements.sweepIssued as Statement).run(Date.now());
  }
}
