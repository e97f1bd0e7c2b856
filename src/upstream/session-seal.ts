/**
 * Sealed session ids: a pool hands the client its target and the upstream's session id,
 * encrypted and authenticated (AES-256-GCM), instead of remembering them. Any gateway replica
 * holding the same `sessions.key` opens the id and sends the session's next request to the
 * same target; nothing is stored. The route path is authenticated data, so an id issued on one
 * route does not open on another.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** The payload layout below; a later layout gets a new version and old ids stop opening. */
const VERSION = 1;
const HEADER_BYTES = 1 + IV_BYTES + TAG_BYTES;

export class SessionSealer {
  readonly #key: Buffer;

  /** `key` is `sessions.key`: exactly 32 bytes. */
  constructor(key: Buffer) {
    if (key.length !== KEY_BYTES) {
      throw new Error(`a session key is ${KEY_BYTES} bytes, got ${key.length}`);
    }
    this.#key = Buffer.from(key);
  }

  /**
   * A key of this process only, when `sessions.key` is not configured: sessions then end with
   * the process, and replicas cannot continue each other's.
   */
  static random(): SessionSealer {
    return new SessionSealer(randomBytes(KEY_BYTES));
  }

  /**
   * The id the client sees: version byte, IV, GCM tag, then the encrypted target (2-byte length
   * prefix) and upstream session id, base64url. Visible ASCII only, as an Mcp-Session-Id must be.
   */
  seal(scope: string, target: string, upstreamSessionId: string): string {
    const targetBytes = Buffer.from(target, "utf8");
    const length = Buffer.alloc(2);
    length.writeUInt16BE(targetBytes.length);
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.#key, iv);
    cipher.setAAD(Buffer.from(scope, "utf8"));
    const sealed = Buffer.concat([
      cipher.update(Buffer.concat([length, targetBytes, Buffer.from(upstreamSessionId, "utf8")])),
      cipher.final(),
    ]);
    return Buffer.concat([Buffer.of(VERSION), iv, cipher.getAuthTag(), sealed]).toString(
      "base64url",
    );
  }

  /** The sealed target and upstream session id; undefined for any id this key did not seal for `scope`. */
  open(scope: string, sealed: string): { target: string; upstreamSessionId: string } | undefined {
    // Node's base64url decoder skips characters outside the alphabet; refuse them instead.
    if (!/^[A-Za-z0-9_-]+$/.test(sealed)) return undefined;
    const bytes = Buffer.from(sealed, "base64url");
    if (bytes.length < HEADER_BYTES + 2 || bytes[0] !== VERSION) return undefined;
    let plain: Buffer;
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.#key, bytes.subarray(1, 1 + IV_BYTES));
      decipher.setAAD(Buffer.from(scope, "utf8"));
      decipher.setAuthTag(bytes.subarray(1 + IV_BYTES, HEADER_BYTES));
      plain = Buffer.concat([decipher.update(bytes.subarray(HEADER_BYTES)), decipher.final()]);
    } catch {
      return undefined;
    }
    const targetLength = plain.readUInt16BE(0);
    if (plain.length < 2 + targetLength) return undefined;
    return {
      target: plain.toString("utf8", 2, 2 + targetLength),
      upstreamSessionId: plain.toString("utf8", 2 + targetLength),
    };
  }
}

/**
 * `sessions.key` from the config: base64 (standard or url alphabet, padding optional) of
 * exactly 32 bytes. Returns the key, or what is wrong with it for the config loader.
 */
export function parseSessionKey(text: string): Buffer | string {
  const problem = `must be ${KEY_BYTES} random bytes in base64 (openssl rand -base64 32)`;
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) return `${problem}; it is not base64`;
  const key = Buffer.from(text.replaceAll("-", "+").replaceAll("_", "/"), "base64");
  if (key.length !== KEY_BYTES) return `${problem}; it decodes to ${key.length} bytes`;
  return key;
}
