/**
 * What the JWT scenarios need besides the gateway: an ES256 signing key, a JWKS endpoint the
 * gateway primes from, and access tokens. Tokens are signed synchronously with node:crypto so
 * that the cold scenario can mint a fresh one for every request inside autocannon's request
 * hook; jose's WebCrypto signing is asynchronous.
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
  close(): Promise<void>;
}

export async function startTokenIssuer(): Promise<TokenIssuer> {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = { ...publicKey.export({ format: "jwk" }), kid: KID, alg: "ES256", use: "sig" };
  const body = JSON.stringify({ keys: [jwk] });
  const server: Server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const issuer = `${origin}/`;
  const header = Buffer.from(JSON.stringify({ alg: "ES256", kid: KID, typ: "at+jwt" })).toString(
    "base64url",
  );
  return {
    mint: () => mintToken(privateKey, header, issuer),
    publicKeyPem: () => publicKey.export({ format: "pem", type: "spki" }).toString(),
    oauthConfig: () => ({
      enabled: true,
      issuer,
      audience: JWT_AUDIENCE,
      jwks_url: `${origin}/jwks.json`,
      required_scopes: ["mcp:read"],
    }),
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
