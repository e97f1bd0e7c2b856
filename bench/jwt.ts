/**
 * What the JWT scenarios need besides the gateway: ES256 signing keys, a JWKS endpoint the
 * gateway primes from, and access tokens. Tokens are signed synchronously with node:crypto so
 * that the cold scenario can mint a fresh one for every request inside autocannon's request
 * hook; jose's WebCrypto signing is asynchronous. The key can be rotated as an IdP does: a new
 * key published beside the old one and signing from then on, the old one dropped later.
 */
import { generateKeyPairSync, type KeyObject, randomUUID, sign } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export const JWT_AUDIENCE = "mcpgw-bench";
const KID = "bench-es256";

export interface TokenIssuer {
  /** A valid access token for the gateway, new (distinct jti) on every call. */
  mint(): string;
  /** The gateway's `auth.oauth` section for tokens from this issuer. */
  oauthConfig(): Record<string, unknown>;
  /** The signing key's public half, PEM (SPKI), for proxies that take a key file. */
  publicKeyPem(): string;
  /**
   * Publishes a new signing key beside the published ones and signs every later token with
   * it; returns its `kid`.
   */
  rotate(): string;
  /** Stops publishing every key but the signing one. */
  dropPrevious(): void;
  /** The `kid`s the JWKS endpoint serves now, the signing key's last. */
  publishedKids(): readonly string[];
  /** Requests the JWKS endpoint has answered. */
  jwksFetches(): number;
  close(): Promise<void>;
}

interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  jwk: Record<string, unknown>;
  /** The token header, base64url. */
  header: string;
}

function newSigningKey(kid: string): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return {
    kid,
    privateKey,
    publicKey,
    jwk: { ...publicKey.export({ format: "jwk" }), kid, alg: "ES256", use: "sig" },
    header: Buffer.from(JSON.stringify({ alg: "ES256", kid, typ: "at+jwt" })).toString("base64url"),
  };
}

export async function startTokenIssuer(): Promise<TokenIssuer> {
  let signing = newSigningKey(KID);
  let rotations = 0;
  let published: SigningKey[] = [signing];
  let body = "";
  const publish = (keys: SigningKey[]) => {
    published = keys;
    body = JSON.stringify({ keys: keys.map((key) => key.jwk) });
  };
  publish(published);
  let fetches = 0;
  const server: Server = createServer((_req, res) => {
    fetches++;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const issuer = `${origin}/`;
  return {
    mint: () => mintToken(signing.privateKey, signing.header, issuer),
    publicKeyPem: () => signing.publicKey.export({ format: "pem", type: "spki" }).toString(),
    oauthConfig: () => ({
      enabled: true,
      issuer,
      audience: JWT_AUDIENCE,
      jwks_url: `${origin}/jwks.json`,
      required_scopes: ["mcp:read"],
    }),
    rotate: () => {
      rotations++;
      signing = newSigningKey(`${KID}-${rotations + 1}`);
      publish([...published, signing]);
      return signing.kid;
    },
    dropPrevious: () => publish([signing]),
    publishedKids: () => published.map((key) => key.kid),
    jwksFetches: () => fetches,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function mintToken(privateKey: KeyObject, header: string, issuer: string): string {
  const now = Math.floor(Date.now() / 1000);
  const payload = Buffer.from(
    JSON.stringify({
      iss: issuer,
      aud: JWT_AUDIENCE,
      sub: "bench-user",
      client_id: "bench-client",
      scope: "mcp:read",
      iat: now,
      exp: now + 3600,
      jti: randomUUID(),
    }),
  ).toString("base64url");
  const input = `${header}.${payload}`;
  // JWS ES256 signatures are r || s (RFC 7518 §3.4), not DER.
  const signature = sign("sha256", Buffer.from(input), {
    key: privateKey,
    dsaEncoding: "ieee-p1363",
  });
  return `${input}.${signature.toString("base64url")}`;
}
