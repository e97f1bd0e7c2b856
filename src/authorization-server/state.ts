/**
 * What the authorization server keeps across restarts: its ES256 signing key (the tokens it
 * issued stay verifiable) and its cookie keys (a login in progress survives a restart). Made
 * on first start in `state_dir` (mode 0700), one file (mode 0600), written atomically; on the
 * shared Redis store, one value every replica reads, sealed with `secrets.encryption_key`.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { exportJWK, generateKeyPair, type JWK } from "jose";
import type { SecretBox } from "../secrets/cipher.js";
import type { RedisStore } from "../store/redis.js";

export interface AuthorizationServerState {
  /** Private signing keys, newest first; the JWKS publishes their public halves. */
  signingKeys: JWK[];
  cookieKeys: string[];
}

const FILE = "authorization-server.json";

/**
 * The state in `stateDir`, made there on first use. With `persist: false` (check-config, which
 * creates no files) a missing state is made in memory only.
 */
export async function loadState(
  stateDir: string,
  { persist = true }: { persist?: boolean } = {},
): Promise<AuthorizationServerState> {
  const existing = await readState(stateDir);
  if (existing !== undefined) return existing;
  const state: AuthorizationServerState = {
    signingKeys: [await newSigningKey()],
    cookieKeys: [randomBytes(32).toString("base64url")],
  };
  if (!persist) return state;
  await writeState(stateDir, state);
  return state;
}

/**
 * The state on the shared Redis store: the first replica to start puts it there (the one in
 * `stateDir`, when a gateway that kept it there moves to Redis, so its tokens stay valid; else
 * new keys), every other replica reads what the first put.
 */
export async function loadSharedState(
  redis: RedisStore,
  box: SecretBox,
  stateDir: string,
): Promise<AuthorizationServerState> {
  const key = sharedKey(redis);
  let sealed = await redis.client.get(key).catch(unreachable(redis));
  if (sealed === null) {
    const local = await readState(stateDir);
    const initial = local ?? {
      signingKeys: [await newSigningKey()],
      cookieKeys: [randomBytes(32).toString("base64url")],
    };
    await redis.client.set(key, box.seal(JSON.stringify(initial)), "NX").catch(unreachable(redis));
    sealed = await redis.client.get(key).catch(unreachable(redis));
    if (sealed === null) throw new Error(`redis ${redis.where}: ${key} vanished as it was made`);
  }
  try {
    return JSON.parse(box.openText(sealed)) as AuthorizationServerState;
  } catch (error) {
    throw new Error(
      `redis ${redis.where}: the authorization server's keys (${key}) do not open with secrets.encryption_key or previous_encryption_keys: ${(error as Error).message}`,
    );
  }
}

/** `mcpgw rotate-signing-key` on the shared store: as `rotateSigningKey`, in Redis. */
export async function rotateSharedSigningKey(
  redis: RedisStore,
  box: SecretBox,
  stateDir: string,
): Promise<{ kid: string; kept: string[] }> {
  const state = await loadSharedState(redis, box, stateDir);
  const fresh = await newSigningKey();
  const kept = state.signingKeys.slice(0, 1);
  const next = { ...state, signingKeys: [fresh, ...kept] };
  await redis.client.set(sharedKey(redis), box.seal(JSON.stringify(next)));
  return { kid: fresh.kid as string, kept: kept.map((key) => key.kid as string) };
}

function sharedKey(redis: RedisStore): string {
  return `${redis.keyPrefix}as:keys`;
}

function unreachable(redis: RedisStore) {
  return (error: Error): never => {
    throw new Error(
      `redis ${redis.where} is unreachable, and the authorization server's keys are there: ${error.message}`,
    );
  };
}

async function readState(stateDir: string): Promise<AuthorizationServerState | undefined> {
  const file = path.join(stateDir, FILE);
  const text = await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw error;
  });
  if (text === undefined) return undefined;
  const state = JSON.parse(text) as AuthorizationServerState;
  if (!Array.isArray(state.signingKeys) || state.signingKeys.length === 0) {
    throw new Error(`${file}: no signing key; move the file away to make new keys`);
  }
  return state;
}

/**
 * `mcpgw rotate-signing-key`: a new signing key first, the previous one kept behind it (tokens
 * it signed stay valid until they expire), older ones dropped. Returns the new key's id.
 */
export async function rotateSigningKey(stateDir: string): Promise<{ kid: string; kept: string[] }> {
  const state = await loadState(stateDir);
  const fresh = await newSigningKey();
  const kept = state.signingKeys.slice(0, 1);
  await writeState(stateDir, { ...state, signingKeys: [fresh, ...kept] });
  return { kid: fresh.kid as string, kept: kept.map((key) => key.kid as string) };
}

async function writeState(stateDir: string, state: AuthorizationServerState): Promise<void> {
  const file = path.join(stateDir, FILE);
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  await chmod(temporary, 0o600);
  await rename(temporary, file);
}

async function newSigningKey(): Promise<JWK> {
  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  const jwk = await exportJWK(privateKey);
  return {
    ...jwk,
    kid: `mcpgw-${new Date().toISOString().slice(0, 10)}-${randomBytes(4).toString("hex")}`,
    alg: "ES256",
    use: "sig",
  };
}

/** The public half of a private JWK. */
export function publicJwk({ d: _private, ...rest }: JWK): JWK {
  return rest;
}
