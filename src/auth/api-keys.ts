/**
 * Opaque API keys, stored only as argon2id hashes. argon2 is slow on purpose, so a verified
 * key is cached for the life of the config generation and a wrong key is remembered for a
 * minute; concurrent first uses of one key share a single verification.
 */
import { Algorithm, hash, parseOptions, verify } from "@node-rs/argon2";
import type { ApiKeyConfig } from "../config/schema.js";
import { setBounded } from "../lib/bounded-map.js";
import { AuthError, type Principal } from "./principal.js";
import { digestToken } from "./token-digest.js";

/** RFC 9106 §4, second recommended option: argon2id, t=3, p=4, 64 MiB. */
const HASH_OPTIONS = {
  algorithm: Algorithm.Argon2id,
  memoryCost: 65_536,
  timeCost: 3,
  parallelism: 4,
} as const;

export function hashApiKey(key: string): Promise<string> {
  return hash(key, HASH_OPTIONS);
}

export interface KeyStoreOptions {
  /** How long a key that matched nothing is refused without another argon2 run. Default 60s. */
  negativeTtlMs?: number;
  /** Bound on remembered wrong keys, so a flood of random keys cannot grow memory. Default 10,000. */
  maxNegativeEntries?: number;
  /** Called after every argon2 run (for the debug log and metrics). */
  onArgon2Run?: (run: { keyId: string; matched: boolean }) => void;
  /** Called on every lookup of a presented key: hit when it was verified before (metrics). */
  onLookup?: (hit: boolean) => void;
  now?: () => number;
}

export class KeyStore {
  readonly #keys: readonly ApiKeyConfig[];
  readonly #verified = new Map<string, Principal>();
  readonly #rejectedUntil = new Map<string, number>();
  readonly #pending = new Map<string, Promise<Principal | undefined>>();
  readonly #negativeTtlMs: number;
  readonly #maxNegativeEntries: number;
  readonly #onArgon2Run: KeyStoreOptions["onArgon2Run"];
  readonly #onLookup: KeyStoreOptions["onLookup"];
  readonly #now: () => number;

  /** Throws when a hash cannot be parsed, so a broken entry fails at load, not on first use. */
  constructor(keys: readonly ApiKeyConfig[], options: KeyStoreOptions = {}) {
    keys.forEach((key) => {
      const parsed = parseOptions(key.hash);
      if (parsed.algorithm !== Algorithm.Argon2id) {
        throw new Error(`API key "${key.id}": hash is not argon2id`);
      }
    });
    this.#keys = keys;
    this.#negativeTtlMs = options.negativeTtlMs ?? 60_000;
    this.#maxNegativeEntries = options.maxNegativeEntries ?? 10_000;
    this.#onArgon2Run = options.onArgon2Run;
    this.#onLookup = options.onLookup;
    this.#now = options.now ?? Date.now;
  }

  get size(): number {
    return this.#keys.length;
  }

  /**
   * The principal of `token`, or AuthError `unknown_key`. A key seen before in this generation
   * (verified or refused) is answered synchronously, without a promise: that is every request
   * but the first of each key, and the request path should not pay for what it does not wait on.
   */
  verify(token: string): Principal | Promise<Principal> {
    const digest = digestToken(token);
    const known = this.#verified.get(digest);
    this.#onLookup?.(known !== undefined);
    if (known) return known;

    const rejectedUntil = this.#rejectedUntil.get(digest);
    if (rejectedUntil !== undefined) {
      if (rejectedUntil > this.#now()) throw unknownKey();
      this.#rejectedUntil.delete(digest);
    }
    return this.#verifyNew(token, digest);
  }

  async #verifyNew(token: string, digest: string): Promise<Principal> {
    let pending = this.#pending.get(digest);
    if (!pending) {
      pending = this.#match(token).finally(() => this.#pending.delete(digest));
      this.#pending.set(digest, pending);
    }
    const principal = await pending;
    if (principal) {
      this.#verified.set(digest, principal);
      return principal;
    }
    this.#remember(digest);
    throw unknownKey();
  }

  /**
   * Salted hashes cannot be indexed, so a new token is tried against each configured hash in
   * turn. The comparison inside argon2 verify is constant-time.
   */
  async #match(token: string): Promise<Principal | undefined> {
    for (const key of this.#keys) {
      const matched = await verify(key.hash, token);
      this.#onArgon2Run?.({ keyId: key.id, matched });
      if (matched) {
        return Object.freeze({
          type: "api_key",
          keyId: key.id,
          scopes: key.scopes,
          scope: key.scopes.join(" "),
          ...(key.routes && { routes: key.routes }),
        });
      }
    }
    return undefined;
  }

  #remember(digest: string): void {
    setBounded(
      this.#rejectedUntil,
      digest,
      this.#now() + this.#negativeTtlMs,
      this.#maxNegativeEntries,
    );
  }
}

function unknownKey(): AuthError {
  return new AuthError("unknown_key", "the API key is not valid", { authType: "api_key" });
}
