/**
 * Tokens and key sets built to mislead the verifier (G5, G10, G15): headers that point at an
 * attacker's keys, a JWKS that publishes private or symmetric keys or a key that does not
 * import, and a token that outlives its own `exp` in the cache.
 */
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import type { JWK } from "jose";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { OAuthVerifier } from "../../../src/auth/access-tokens.js";
import { JwksCache, usableKeys } from "../../../src/auth/jwks.js";
import { AuthError, type Principal } from "../../../src/auth/principal.js";
import type { OAuthConfig } from "../../../src/config/schema.js";
import { type RunningServer, startHttpServer } from "../../helpers/fake-upstreams.js";
import {
  type JwksServer,
  makeKey,
  makeRawRsaKey,
  type SigningKey,
  signRaw,
  signToken,
  startJwksServer,
} from "../../helpers/jwks-server.js";
import { loopbackOutbound } from "../../helpers/outbound.js";

const AUDIENCE = "mcpgw-hostile";
const log = pino({ level: "silent" });
const outbound = loopbackOutbound();
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/** An RSA key with its KeyObject (for signRaw) and its JWK as published in a key set. */
interface RawKey {
  kid: string;
  privateKey: KeyObject;
  publicJwk: JWK;
}

function rawRsaKey(kid: string): RawKey {
  return { kid, ...makeRawRsaKey(kid, 2048) };
}

/** A key set server publishing exactly `jwks` (the helper's keys, as JWKs, verbatim). */
async function publishing(jwks: JWK[]): Promise<JwksServer> {
  const server = await startJwksServer([]);
  server.keys = jwks.map((publicJwk) => ({ publicJwk }) as unknown as SigningKey);
  return server;
}

async function verifierFor(server: JwksServer, overrides: Partial<OAuthConfig> = {}) {
  const jwks = new JwksCache({
    url: server.url,
    cacheTtlMs: 300_000,
    fetchTimeoutMs: 1_000,
    outbound,
    log,
    cooldownMs: 60_000,
  });
  await jwks.prime();
  const config: OAuthConfig = {
    enabled: true,
    issuer: server.issuer,
    audience: AUDIENCE,
    jwks_url: server.url,
    required_scopes: [],
    jwks_cache_ttl: 300_000,
    leeway: 30_000,
    metadata_path: "/.well-known/oauth-protected-resource",
    ...overrides,
  };
  return { verifier: new OAuthVerifier(config, jwks), jwks };
}

const verify = (v: OAuthVerifier, token: string) =>
  Promise.resolve().then(() => v.verifyAccessToken(token));

async function refusal(promise: Promise<Principal>): Promise<AuthError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof AuthError) return error;
    throw error;
  }
  throw new Error("expected the token to be refused");
}

const claims = (issuer: string) => ({
  iss: issuer,
  aud: AUDIENCE,
  sub: "user-1",
  exp: Math.floor(Date.now() / 1000) + 300,
});

describe("headers that point at other keys", () => {
  let legit: RawKey;
  let attacker: RawKey;
  let server: JwksServer;
  let attackerServer: RunningServer;
  let v: OAuthVerifier;

  beforeAll(async () => {
    legit = rawRsaKey("legit-1");
    attacker = rawRsaKey("attacker-1");
    server = await publishing([legit.publicJwk]);
    // Serves the attacker's key to whoever asks, at any path: it must never be asked.
    attackerServer = await startHttpServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ keys: [attacker.publicJwk] }));
    });
    ({ verifier: v } = await verifierFor(server));
  });

  afterAll(async () => {
    await server.close();
    await attackerServer.close();
  });

  it("refuses a token whose jku, x5u or embedded jwk carries an attacker's key, and never fetches them", async () => {
    const origin = new URL(attackerServer.url).origin;
    const jku = `${origin}/.well-known/jwks.json`;
    const x5u = `${origin}/cert.pem`;
    const attackerJwk = attacker.publicJwk;
    const payload = claims(server.issuer);
    const forged: [string, Record<string, unknown>, string][] = [
      ["jku, the attacker's kid", { alg: "RS256", kid: attacker.kid, jku }, "unknown_kid"],
      ["jku, the legitimate kid", { alg: "RS256", kid: legit.kid, jku }, "bad_signature"],
      ["x5u, the attacker's kid", { alg: "RS256", kid: attacker.kid, x5u }, "unknown_kid"],
      ["x5u, the legitimate kid", { alg: "RS256", kid: legit.kid, x5u }, "bad_signature"],
      ["embedded jwk, no kid", { alg: "RS256", jwk: attackerJwk }, "bad_signature"],
      [
        "embedded jwk, the attacker's kid",
        { alg: "RS256", kid: attacker.kid, jwk: attackerJwk },
        "unknown_kid",
      ],
      [
        "embedded jwk, the legitimate kid",
        { alg: "RS256", kid: legit.kid, jwk: attackerJwk },
        "bad_signature",
      ],
      ["all three", { alg: "RS256", kid: legit.kid, jku, x5u, jwk: attackerJwk }, "bad_signature"],
    ];
    for (const [name, header, result] of forged) {
      const error = await refusal(verify(v, signRaw(header, payload, attacker.privateKey)));
      expect(error.result, name).toBe(result);
      expect(error.status, name).toBe(401);
    }
    // The same headers on a token the legitimate key signed change nothing: they are ignored,
    // the key still comes from jwks_url.
    const honest = signRaw({ alg: "RS256", kid: legit.kid, jku, x5u }, payload, legit.privateKey);
    expect(await verify(v, honest)).toMatchObject({ type: "oauth", sub: "user-1" });
    expect(attackerServer.requests).toHaveLength(0);
  });
});

describe("what a JWKS publishes by mistake", () => {
  it("drops the private members a JWKS publishes, and verifies with the public key alone", async () => {
    const rsa = rawRsaKey("leaky-rsa");
    const rsaPrivate = {
      ...(rsa.privateKey.export({ format: "jwk" }) as JWK),
      kid: rsa.kid,
      alg: "RS256",
      use: "sig",
    };
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const ecPrivate = { ...(ec.privateKey.export({ format: "jwk" }) as JWK), kid: "leaky-ec" };
    const ed = generateKeyPairSync("ed25519");
    const edPrivate = { ...(ed.privateKey.export({ format: "jwk" }) as JWK), kid: "leaky-ed" };
    expect(rsaPrivate).toHaveProperty("d");
    expect(ecPrivate).toHaveProperty("d");

    const { keys, skipped } = usableKeys({ keys: [rsaPrivate, ecPrivate, edPrivate] });
    expect(skipped).toEqual([]);
    expect(keys.map((key) => Object.keys(key).sort())).toEqual([
      ["alg", "e", "kid", "kty", "n", "use"],
      ["crv", "kid", "kty", "x", "y"],
      ["crv", "kid", "kty", "x"],
    ]);
    for (const key of keys) {
      for (const member of PRIVATE_MEMBERS) expect(key).not.toHaveProperty(member);
    }

    const server = await publishing([rsaPrivate, ecPrivate, edPrivate]);
    const { verifier: v } = await verifierFor(server);
    const payload = claims(server.issuer);
    expect(
      await verify(v, signRaw({ alg: "RS256", kid: rsa.kid }, payload, rsa.privateKey)),
    ).toMatchObject({ type: "oauth", sub: "user-1" });
    await server.close();
  });

  it("skips an oct (symmetric) key: an HS256 token signed with it is refused", async () => {
    const legit = await makeKey("ES256", "legit-ec");
    const secret = Buffer.from("a-shared-secret-an-idp-should-never-publish-0123456789");
    const oct: JWK = { kty: "oct", k: secret.toString("base64url"), kid: "hmac-1", alg: "HS256" };
    const octWithoutAlg: JWK = { kty: "oct", k: secret.toString("base64url"), kid: "hmac-2" };

    const { keys, skipped } = usableKeys({ keys: [legit.publicJwk, oct, octWithoutAlg] });
    expect(keys.map((key) => key.kid)).toEqual([legit.kid]);
    expect(skipped).toEqual([
      'kid "hmac-1": key type "oct" is not an asymmetric signing key',
      'kid "hmac-2": key type "oct" is not an asymmetric signing key',
    ]);

    const server = await publishing([legit.publicJwk, oct, octWithoutAlg]);
    const { verifier: v } = await verifierFor(server);
    const { createHmac } = await import("node:crypto");
    const hs256 = (kid: string) => {
      const encode = (part: object) => Buffer.from(JSON.stringify(part)).toString("base64url");
      const input = `${encode({ alg: "HS256", kid, typ: "at+jwt" })}.${encode(claims(server.issuer))}`;
      return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
    };
    for (const kid of ["hmac-1", "hmac-2"]) {
      const error = await refusal(verify(v, hs256(kid)));
      expect(error.result, kid).toBe("bad_signature");
      expect(error.status, kid).toBe(401);
    }
    // The asymmetric key beside it still verifies.
    expect(await verify(v, await signToken(legit, server.issuer, AUDIENCE))).toMatchObject({
      type: "oauth",
    });
    // A key set of nothing but symmetric keys gives the gateway nothing to verify with.
    server.keys = [{ publicJwk: oct } as unknown as SigningKey];
    await expect(
      new JwksCache({
        url: server.url,
        cacheTtlMs: 60_000,
        fetchTimeoutMs: 1_000,
        outbound,
        log,
      }).prime(),
    ).rejects.toThrow(/no usable signing key/);
    await server.close();
  });
});

describe("errors the verifier does not expect", () => {
  it("refuses as malformed a token whose key fails to import (an error no check names)", async () => {
    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const publicJwk = ec.publicKey.export({ format: "jwk" }) as JWK;
    // A point that is not on the curve: the key set parses, the key does not import.
    const broken: JWK = { ...publicJwk, x: publicJwk.y, kid: "broken-ec", alg: "ES256" };
    const server = await publishing([broken]);
    const { verifier: v } = await verifierFor(server);
    const token = signRaw({ alg: "ES256", kid: "broken-ec" }, claims(server.issuer), ec.privateKey);
    const error = await refusal(verify(v, token));
    expect(error).toMatchObject({ result: "malformed", status: 401, oauthError: "invalid_token" });
    // The cause is WebCrypto's, none of the jose errors the verifier maps one by one.
    expect((error.cause as Error).name).toBe("DataError");
    await server.close();
  });
});

describe("the verified-token cache", () => {
  let key: SigningKey;
  let server: JwksServer;

  beforeAll(async () => {
    key = await makeKey("ES256", "short-lived");
    server = await startJwksServer([key]);
  });

  afterAll(async () => {
    await server.close();
  });

  it("refuses a cached token once its exp has passed", async () => {
    const { verifier: v } = await verifierFor(server, { leeway: 0 });
    const token = await signToken(key, server.issuer, AUDIENCE, { expiresIn: 2 });
    expect(await verify(v, token)).toMatchObject({ type: "oauth" });
    // Answered from the cache: no promise, no signature check.
    const cached = v.verifyAccessToken(token);
    expect(cached).not.toBeInstanceOf(Promise);
    expect(cached).toMatchObject({ type: "oauth" });
    // Polled, not slept on: the cached answer must turn into a refusal once exp has passed.
    const error = await vi.waitFor(() => refusal(verify(v, token)), {
      timeout: 5_000,
      interval: 100,
    });
    expect(error).toMatchObject({ result: "expired", status: 401 });
  });
});
