/**
 * Secrets at rest: `enc:v1:<key id>:<base64url(iv ‖ ciphertext ‖ tag)>`, AES-256-GCM under a
 * key derived (HKDF-SHA256) from `secrets.encryption_key`. The key id (a digest of the derived
 * key, not the key) says which key sealed a value, so that after a rotation the values sealed
 * under a previous key (`secrets.previous_encryption_keys`) still open, and a value sealed
 * under a key the gateway does not have is named as such instead of failing as corrupt.
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from "node:crypto";

export const SEALED_PREFIX = "enc:v1:";

/** The least an encryption key may have: 32 characters (`openssl rand -base64 32` gives 44). */
export const MIN_KEY_LENGTH = 32;

const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Bound into every value: a v1 secret of mcpgw, nothing else. */
const AAD = Buffer.from("mcpgw secret v1");

interface Key {
  id: string;
  bytes: Buffer;
}

function deriveKey(secret: string): Key {
  const bytes = Buffer.from(hkdfSync("sha256", secret, "mcpgw", "mcpgw secrets v1", 32));
  const id = createHash("sha256").update(bytes).digest("base64url").slice(0, 8);
  return { id, bytes };
}

export class SecretError extends Error {}

export class SecretBox {
  readonly #current: Key;
  readonly #byId: Map<string, Key>;

  /** `current` seals and opens; `previous` only open (values sealed before a rotation). */
  constructor(current: string, previous: readonly string[] = []) {
    for (const secret of [current, ...previous]) {
      if (secret.length < MIN_KEY_LENGTH) {
        throw new SecretError(
          `an encryption key must have at least ${MIN_KEY_LENGTH} characters (openssl rand -base64 32)`,
        );
      }
    }
    this.#current = deriveKey(current);
    this.#byId = new Map([this.#current, ...previous.map(deriveKey)].map((key) => [key.id, key]));
  }

  /** The current key's id, as sealed values carry it. */
  get keyId(): string {
    return this.#current.id;
  }

  seal(plaintext: string | Buffer): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.#current.bytes, iv);
    cipher.setAAD(AAD);
    const sealed = Buffer.concat([
      iv,
      cipher.update(plaintext),
      cipher.final(),
      cipher.getAuthTag(),
    ]);
    return `${SEALED_PREFIX}${this.#current.id}:${sealed.toString("base64url")}`;
  }

  /** Whether `value` was sealed under a key other than the current one (re-seal it). */
  isStale(value: string): boolean {
    return !value.startsWith(`${SEALED_PREFIX}${this.#current.id}:`);
  }

  open(value: string): Buffer {
    if (!value.startsWith(SEALED_PREFIX)) throw new SecretError("not an enc:v1 value");
    const [id, data] = value.slice(SEALED_PREFIX.length).split(":", 2);
    const key = id === undefined ? undefined : this.#byId.get(id);
    if (key === undefined) {
      throw new SecretError(
        `sealed under key ${id}, which is neither secrets.encryption_key (${this.#current.id}) nor one of secrets.previous_encryption_keys`,
      );
    }
    const sealed = Buffer.from(data ?? "", "base64url");
    if (sealed.length < IV_BYTES + TAG_BYTES) throw new SecretError("truncated enc:v1 value");
    const decipher = createDecipheriv("aes-256-gcm", key.bytes, sealed.subarray(0, IV_BYTES));
    decipher.setAAD(AAD);
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    try {
      return Buffer.concat([
        decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)),
        decipher.final(),
      ]);
    } catch {
      throw new SecretError(`enc:v1 value under key ${id} does not open: altered or truncated`);
    }
  }

  openText(value: string): string {
    return this.open(value).toString("utf8");
  }
}
