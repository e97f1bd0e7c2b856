import { CompactSign, exportSPKI, SignJWT } from "jose";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { OAuthVerifier } from "../../../src/auth/access-tokens.js";
import { JwksCache } from "../../../src/auth/jwks.js";
import { AuthError } from "../../../src/auth/principal.js";
import type { OAuthConfig } from "../../../src/config/schema.js";
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

const AUDIENCE = "mcpgw-test";
const log = pino({ level: "silent" });
const outbound = loopbackOutbound();

let rsa: SigningKey;
let ec: SigningKey;
let ed: SigningKey;
let server: JwksServer;

beforeAll(async () => {
  [rsa, ec, ed] = await Promise.all([
    makeKey("RS256", "rsa-1"),
    makeKey("ES256", "ec-1"),
    makeKey("EdDSA", "ed-1"),
  ]);
  server = await startJwksServer([rsa, ec, ed]);
});

afterAll(async () => {
  await server.close();
});

function oauthConfig(overrides: Partial<OAuthConfig> = {}): OAuthConfig {
  return {
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
}

async function verifier(
  overrides: Partial<OAuthConfig> = {},
  jwksOptions: { cooldownMs?: number; cacheTtlMs?: number } = {},
) {
  const jwks = new JwksCache({
    url: overrides.jwks_url ?? server.url,
    cacheTtlMs: jwksOptions.cacheTtlMs ?? 300_000,
    fetchTimeoutMs: 1_000,
    outbound,
    log,
    ...(jwksOptions.cooldownMs !== undefined && { cooldownMs: jwksOptions.cooldownMs }),
  });
  await jwks.prime();
  return { verifier: new OAuthVerifier(oauthConfig(overrides), jwks), jwks };
}

async function failure(promise: unknown): Promise<AuthError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof AuthError) return error;
    throw error;
  }
  throw new Error("expected the token to be refused");
}

const verify = (v: OAuthVerifier, token: string) =>
  Promise.resolve().then(() => v.verifyAccessToken(token));
const b64 = (value: unknown) =>
  Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

describe("accepted tokens", () => {
  it.each(["RS256", "ES256", "EdDSA"] as const)(
    "verifies %s and reads the principal",
    async (alg) => {
      const key = { RS256: rsa, ES256: ec, EdDSA: ed }[alg];
      const { verifier: v } = await verifier();
      const principal = await verify(v, await signToken(key, server.issuer, AUDIENCE));
      expect(principal).toEqual({
        type: "oauth",
        sub: "user-1",
        oauthClientId: "client-1",
        scopes: ["mcp:read", "mcp:write"],
        scope: "mcp:read mcp:write",
      });
    },
  );

  it("accepts typ JWT, an aud array, scp arrays, and azp when client_id is absent", async () => {
    const { verifier: v } = await verifier({ required_scopes: ["mcp:read"] });
    const token = await signToken(rsa, server.issuer, ["other", AUDIENCE], {
      header: { typ: "JWT" },
      claims: { scope: undefined, scp: ["mcp:read"], client_id: undefined, azp: "keycloak-client" },
    });
    expect(await verify(v, token)).toMatchObject({
      oauthClientId: "keycloak-client",
      scopes: ["mcp:read"],
    });
  });

  it("answers a repeated token from the cache, without a promise", async () => {
    const { verifier: v } = await verifier();
    const token = await signToken(ec, server.issuer, AUDIENCE);
    await verify(v, token);
    const again = v.verifyAccessToken(token);
    expect(again).not.toBeInstanceOf(Promise);
    expect(again).toMatchObject({ sub: "user-1" });
  });

  it("allows clock skew within leeway", async () => {
    const { verifier: v } = await verifier();
    const token = await signToken(rsa, server.issuer, AUDIENCE, { expiresIn: -10 });
    expect(await verify(v, token)).toMatchObject({ type: "oauth" });
  });
});

describe("refused tokens (one auth_result each)", () => {
  let v: OAuthVerifier;
  beforeAll(async () => {
    ({ verifier: v } = await verifier());
  });

  const refused = async (token: string | Promise<string>) => failure(verify(v, await token));

  it("alg none", async () => {
    const token = `${b64({ alg: "none", typ: "JWT" })}.${b64({ iss: server.issuer, aud: AUDIENCE, exp: 9e9 })}.AAAA`;
    expect((await refused(token)).result).toBe("bad_signature");
  });

  it("HS256 signed with the RSA public key (algorithm confusion)", async () => {
    const { createPublicKey } = await import("node:crypto");
    const pem = await exportSPKI(
      createPublicKey({ key: rsa.publicJwk as never, format: "jwk" }) as never,
    );
    const token = await new SignJWT({
      iss: server.issuer,
      aud: AUDIENCE,
      exp: Math.floor(Date.now() / 1000) + 60,
    })
      .setProtectedHeader({ alg: "HS256", kid: rsa.kid })
      .sign(new TextEncoder().encode(pem));
    expect((await refused(token)).result).toBe("bad_signature");
  });

  it("wrong audience", async () => {
    expect((await refused(signToken(rsa, server.issuer, "someone-else"))).result).toBe(
      "bad_audience",
    );
  });

  it("wrong issuer, a missing trailing slash included", async () => {
    expect((await refused(signToken(rsa, "https://evil.example/", AUDIENCE))).result).toBe(
      "bad_issuer",
    );
    expect((await refused(signToken(rsa, server.issuer.replace(/\/$/, ""), AUDIENCE))).result).toBe(
      "bad_issuer",
    );
  });

  it("expired beyond leeway", async () => {
    const error = await refused(signToken(rsa, server.issuer, AUDIENCE, { expiresIn: -60 }));
    expect(error.result).toBe("expired");
    expect(error.status).toBe(401);
    expect(error.oauthError).toBe("invalid_token");
  });

  it("nbf in the future", async () => {
    const nbf = Math.floor(Date.now() / 1000) + 120;
    expect(
      (await refused(signToken(rsa, server.issuer, AUDIENCE, { claims: { nbf } }))).result,
    ).toBe("not_yet_valid");
  });

  it("iat in the future beyond leeway", async () => {
    const iat = Math.floor(Date.now() / 1000) + 120;
    expect(
      (await refused(signToken(rsa, server.issuer, AUDIENCE, { claims: { iat } }))).result,
    ).toBe("not_yet_valid");
  });

  it("missing exp", async () => {
    expect(
      (await refused(signToken(rsa, server.issuer, AUDIENCE, { expiresIn: null }))).result,
    ).toBe("malformed");
  });

  it("tampered payload and tampered signature", async () => {
    const [header, , signature] = (await signToken(rsa, server.issuer, AUDIENCE)).split(".");
    const forged = b64({
      iss: server.issuer,
      aud: AUDIENCE,
      sub: "admin",
      exp: Math.floor(Date.now() / 1000) + 60,
    });
    expect((await refused(`${header}.${forged}.${signature}`)).result).toBe("bad_signature");
    const token = await signToken(rsa, server.issuer, AUDIENCE);
    const flipped = token.slice(0, -3) + (token.at(-3) === "A" ? "B" : "A") + token.slice(-2);
    expect((await refused(flipped)).result).toBe("bad_signature");
  });

  it("a crit header the gateway does not understand", async () => {
    const raw = makeRawRsaKey("raw-1", 2048);
    const own = await startJwksServer([]);
    own.keys = [{ ...rsa, kid: "raw-1", publicJwk: raw.publicJwk }];
    const { verifier: critical } = await verifier({ jwks_url: own.url });
    const payload = { iss: server.issuer, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 60 };
    // The same token without crit verifies: the refusal is about crit alone.
    const plain = signRaw({ alg: "RS256", kid: "raw-1" }, payload, raw.privateKey);
    expect(await verify(critical, plain)).toMatchObject({ type: "oauth" });
    const header = { alg: "RS256", kid: "raw-1", crit: ["urn:example:ext"], "urn:example:ext": 1 };
    const token = signRaw(header, payload, raw.privateKey);
    expect((await failure(verify(critical, token))).result).toBe("malformed");
    await own.close();
  });

  it("segments that are not base64url, and a payload that is not a JSON object", async () => {
    expect((await refused("abc$.def.ghi")).result).toBe("malformed");
    const array = await new CompactSign(new TextEncoder().encode("[1,2,3]"))
      .setProtectedHeader({ alg: "RS256", kid: rsa.kid })
      .sign(rsa.privateKey);
    expect((await refused(array)).result).toBe("malformed");
  });

  it("a typ that is not an access token", async () => {
    expect(
      (await refused(signToken(rsa, server.issuer, AUDIENCE, { header: { typ: "dpop+jwt" } })))
        .result,
    ).toBe("malformed");
  });

  it("verifies a token whatever its scopes: required_scopes are the authorization step's", async () => {
    const { verifier: scoped } = await verifier({ required_scopes: ["mcp:read", "mcp:admin"] });
    const principal = await verify(scoped, await signToken(rsa, server.issuer, AUDIENCE));
    expect(principal).toMatchObject({ type: "oauth", scopes: ["mcp:read", "mcp:write"] });
  });
});

describe("the JWKS", () => {
  it("refetches once for a new kid (rotation) right after the last fetch, then verifies", async () => {
    const rotated = await makeKey("ES256", "ec-2");
    const own = await startJwksServer([ec]);
    // The default cooldown: a fetch just made (the start's, or a background refresh) must not
    // keep a key published since then refused.
    const { verifier: v } = await verifier({ jwks_url: own.url, issuer: server.issuer });
    own.keys = [ec, rotated];
    // Concurrent first users of the new key share one refetch and all get through.
    const tokens = await Promise.all(
      Array.from({ length: 10 }, () => signToken(rotated, server.issuer, AUDIENCE)),
    );
    const principals = await Promise.all(tokens.map((token) => verify(v, token)));
    for (const principal of principals) expect(principal).toMatchObject({ type: "oauth" });
    expect(own.fetches).toBe(2);
    await own.close();
  });

  it("survives a flood of unknown kids with at most one refetch per cooldown", async () => {
    const own = await startJwksServer([rsa]);
    const { verifier: v } = await verifier({ jwks_url: own.url }, { cooldownMs: 60_000 });
    const stranger = await makeKey("ES256");
    const tokens = await Promise.all(
      Array.from({ length: 50 }, (_, n) =>
        signToken({ ...stranger, kid: `made-up-${n}` }, server.issuer, AUDIENCE),
      ),
    );
    const results = await Promise.all(
      tokens.map(async (token) => (await failure(verify(v, token))).result),
    );
    expect(new Set(results)).toEqual(new Set(["unknown_kid"]));
    // The start's fetch and one refetch, whatever the number of made-up kids.
    expect(own.fetches).toBe(2);
    await own.close();
  });

  it("keeps verifying with the last good keys while the endpoint fails, past the TTL", async () => {
    const own = await startJwksServer([rsa]);
    const { verifier: v, jwks } = await verifier({ jwks_url: own.url }, { cacheTtlMs: 20 });
    own.mode = "error";
    await vi.waitFor(() => expect(jwks.stats.failures).toBeGreaterThanOrEqual(2));
    own.mode = "garbage";
    await vi.waitFor(() => expect(jwks.stats.failures).toBeGreaterThanOrEqual(4));
    expect(await verify(v, await signToken(rsa, server.issuer, AUDIENCE))).toMatchObject({
      type: "oauth",
    });
    jwks.close();
    await own.close();
  });

  it("answers jwks_unavailable (503, no invalid_token) when a new kid cannot be looked up", async () => {
    const own = await startJwksServer([rsa]);
    const { verifier: v } = await verifier({ jwks_url: own.url }, { cooldownMs: 0 });
    own.mode = "error";
    const error = await failure(
      verify(v, await signToken(await makeKey("RS256", "new"), server.issuer, AUDIENCE)),
    );
    expect(error).toMatchObject({ result: "jwks_unavailable", status: 503 });
    expect(error.oauthError).toBeUndefined();
    await own.close();
  });

  it("refuses to prime from garbage, a non-JWKS, an error status or a slow endpoint", async () => {
    const own = await startJwksServer([rsa]);
    const prime = (fetchTimeoutMs = 1_000) =>
      new JwksCache({ url: own.url, cacheTtlMs: 60_000, fetchTimeoutMs, outbound, log }).prime();
    own.mode = "garbage";
    await expect(prime()).rejects.toThrow(/not JSON/);
    own.mode = "not-a-jwks";
    await expect(prime()).rejects.toThrow(/not a JWK Set/);
    own.mode = "error";
    await expect(prime()).rejects.toThrow(/HTTP 500/);
    own.mode = "hang";
    await expect(prime(200)).rejects.toThrow(/timed out/);
    await own.close();
  });

  it("refuses RSA keys under 2048 bits", async () => {
    const raw = makeRawRsaKey("weak", 1024);
    const weak = { ...rsa, kid: "weak", publicJwk: raw.publicJwk };
    const own = await startJwksServer([weak, ec]);
    const { verifier: v } = await verifier({ jwks_url: own.url }, { cooldownMs: 60_000 });
    const payload = { iss: server.issuer, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 60 };
    const token = signRaw({ alg: "RS256", kid: "weak" }, payload, raw.privateKey);
    expect((await failure(verify(v, token))).result).toBe("unknown_kid");
    own.keys = [weak];
    await expect(
      new JwksCache({
        url: own.url,
        cacheTtlMs: 60_000,
        fetchTimeoutMs: 1_000,
        outbound,
        log,
      }).prime(),
    ).rejects.toThrow(/no usable signing key/);
    await own.close();
  });
});
