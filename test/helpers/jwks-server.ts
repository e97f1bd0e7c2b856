/**
 * A real JWKS endpoint for tests, with signing keys made by jose, and the failure modes of a
 * real identity provider: down, garbage, slow, rotated keys.
 */
import { generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  type CryptoKey,
  exportJWK,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  SignJWT,
} from "jose";

export type Algorithm = "RS256" | "ES256" | "EdDSA" | "PS256";

export interface SigningKey {
  kid: string;
  alg: Algorithm;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export async function makeKey(
  alg: Algorithm,
  kid = `${alg.toLowerCase()}-${Math.random().toString(36).slice(2, 8)}`,
): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { kid, alg, privateKey, publicJwk };
}

/** `hold`: requests wait, unanswered, until `release()` answers them as `ok`. */
export type JwksMode = "ok" | "garbage" | "not-a-jwks" | "error" | "hang" | "hold";

export interface JwksServer {
  url: string;
  issuer: string;
  keys: SigningKey[];
  /** How many times the JWKS was requested. */
  fetches: number;
  mode: JwksMode;
  /** Resolves when the next request is held in mode `hold`. */
  nextHold(): Promise<void>;
  /** Answers the requests held in mode `hold` with the current keys, and returns to `ok`. */
  release(): void;
  close(): Promise<void>;
}

export async function startJwksServer(keys: SigningKey[]): Promise<JwksServer> {
  const state = { fetches: 0, mode: "ok" as JwksMode, keys };
  const held: ServerResponse[] = [];
  let onHold: (() => void) | undefined;
  const answer = (res: ServerResponse) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ keys: state.keys.map((key) => key.publicJwk) }));
  };
  const server: Server = createServer((req, res) => {
    if (req.url !== "/.well-known/jwks.json") {
      res.writeHead(404).end();
      return;
    }
    state.fetches++;
    switch (state.mode) {
      case "ok":
        answer(res);
        return;
      case "garbage":
        res.writeHead(200, { "content-type": "application/json" });
        res.end("<html>502 Bad Gateway</html>");
        return;
      case "not-a-jwks":
        res.writeHead(200, { "content-type": "application/json" });
        res.end('{"issuer":"nope"}');
        return;
      case "error":
        res.writeHead(500).end();
        return;
      case "hang":
        return;
      case "hold":
        held.push(res);
        onHold?.();
        return;
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  return {
    url: `${origin}/.well-known/jwks.json`,
    issuer: `${origin}/`,
    get keys() {
      return state.keys;
    },
    set keys(next) {
      state.keys = next;
    },
    get fetches() {
      return state.fetches;
    },
    get mode() {
      return state.mode;
    },
    set mode(next) {
      state.mode = next;
    },
    nextHold: () =>
      new Promise<void>((resolve) => {
        onHold = resolve;
      }),
    release() {
      state.mode = "ok";
      for (const res of held.splice(0)) answer(res);
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface TokenOptions {
  claims?: JWTPayload & Record<string, unknown>;
  header?: Record<string, unknown>;
  /** Seconds from now; default 300. */
  expiresIn?: number | null;
}

/** Signs an access token with `key`; defaults give a valid token for `issuer`/`audience`. */
export async function signToken(
  key: SigningKey,
  issuer: string,
  audience: string | string[],
  { claims = {}, header = {}, expiresIn = 300 }: TokenOptions = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const payload: JWTPayload = {
    iss: issuer,
    aud: audience,
    sub: "user-1",
    client_id: "client-1",
    scope: "mcp:read mcp:write",
    iat: now,
    ...(expiresIn === null ? {} : { exp: now + expiresIn }),
    ...claims,
  };
  return new SignJWT(payload)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "at+jwt", ...header })
    .sign(key.privateKey);
}

/**
 * Signs header and payload as given, with node:crypto: for tokens jose refuses to produce on
 * purpose (unknown `crit`, RSA keys under 2048 bits), which the gateway must refuse to accept.
 */
export function signRaw(header: object, payload: object, privateKey: KeyObject): string {
  const encode = (part: object) => Buffer.from(JSON.stringify(part)).toString("base64url");
  const input = `${encode(header)}.${encode(payload)}`;
  return `${input}.${sign("sha256", Buffer.from(input), privateKey).toString("base64url")}`;
}

/** An RSA key of `bits` bits, made with node:crypto, which (unlike jose) makes weak keys too. */
export function makeRawRsaKey(
  kid: string,
  bits: number,
): { privateKey: KeyObject; publicJwk: JWK } {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: bits });
  return {
    privateKey,
    publicJwk: { ...(publicKey.export({ format: "jwk" }) as JWK), kid, alg: "RS256", use: "sig" },
  };
}
