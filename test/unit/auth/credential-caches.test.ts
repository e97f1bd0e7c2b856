/**
 * G16: the caches of verified and refused credentials never hold a token. After an API key, a
 * wrong key and an access token have been verified and cached, a heap snapshot of this process
 * holds none of them, while it does hold a token kept as a Map key the way a cache keyed by
 * the token would keep it.
 *
 * The tokens are made at run time and kept between uses only as Buffers, whose bytes a heap
 * snapshot does not contain, so that the only strings of them are those the code under test
 * keeps (and the snapshot's garbage collection takes the rest).
 */
import { randomBytes } from "node:crypto";
import { getHeapSnapshot } from "node:v8";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OAuthVerifier } from "../../../src/auth/access-tokens.js";
import { KeyStore } from "../../../src/auth/api-keys.js";
import { JwksCache } from "../../../src/auth/jwks.js";
import { type JwksServer, makeKey, signToken, startJwksServer } from "../../helpers/jwks-server.js";
import { cheapHash } from "../../helpers/keys.js";
import { loopbackOutbound } from "../../helpers/outbound.js";

const AUDIENCE = "mcpgw-credential-caches";

/** Which of `needles` occur in a heap snapshot of this process (taken after a full GC). */
async function inHeapSnapshot(needles: readonly Buffer[]): Promise<boolean[]> {
  const found = needles.map(() => false);
  const overlap = Math.max(...needles.map((needle) => needle.length)) - 1;
  let tail: Buffer = Buffer.alloc(0);
  for await (const chunk of getHeapSnapshot()) {
    const data = chunk as Buffer;
    // A needle may straddle two chunks: the end of one and the start of the next.
    const seam = Buffer.concat([tail, data.subarray(0, overlap)]);
    needles.forEach((needle, n) => {
      if (!found[n] && (data.includes(needle) || seam.includes(needle))) found[n] = true;
    });
    tail = data.subarray(Math.max(0, data.length - overlap));
  }
  return found;
}

const randomToken = (prefix: string) =>
  Buffer.from(`${prefix}-${randomBytes(32).toString("base64url")}`);

describe("what the credential caches keep", () => {
  let jwks: JwksServer;
  let cache: JwksCache;

  beforeAll(async () => {
    jwks = await startJwksServer([await makeKey("ES256", "heap-1")]);
    cache = new JwksCache({
      url: jwks.url,
      cacheTtlMs: 300_000,
      fetchTimeoutMs: 1_000,
      outbound: loopbackOutbound(),
      log: pino({ level: "silent" }),
    });
    await cache.prime();
  });

  afterAll(async () => {
    cache.close();
    await jwks.close();
  });

  it("holds no API key, wrong key or access token it has cached, where a token-keyed Map shows", async () => {
    const apiKey = randomToken("heap-api-key");
    const wrongKey = randomToken("heap-wrong-key");
    const held = randomToken("heap-held-token");
    const keys = new KeyStore([
      { id: "heap", hash: await cheapHash(apiKey.toString()), scopes: ["*"] },
    ]);
    const verifier = new OAuthVerifier(
      {
        enabled: true,
        issuer: jwks.issuer,
        audience: AUDIENCE,
        jwks_url: jwks.url,
        required_scopes: [],
        jwks_cache_ttl: 300_000,
        leeway: 30_000,
        metadata_path: "/.well-known/oauth-protected-resource",
      },
      cache,
    );
    const accessToken = Buffer.from(
      await signToken(jwks.keys[0] as (typeof jwks.keys)[0], jwks.issuer, AUDIENCE, {
        claims: { jti: randomBytes(16).toString("base64url") },
      }),
    );

    expect(await keys.verify(apiKey.toString())).toMatchObject({ keyId: "heap" });
    await expect(keys.verify(wrongKey.toString())).rejects.toMatchObject({
      result: "unknown_key",
    });
    expect(await verifier.verifyAccessToken(accessToken.toString())).toMatchObject({
      type: "oauth",
    });
    // All three are cached now: answered without a promise, and without argon2 or jose.
    expect(keys.verify(apiKey.toString())).not.toBeInstanceOf(Promise);
    expect(() => keys.verify(wrongKey.toString())).toThrow(/not valid/);
    expect(verifier.verifyAccessToken(accessToken.toString())).not.toBeInstanceOf(Promise);

    // What a cache keyed by the token would keep alive; it is used after the snapshot.
    const tokenKeyed = new Map([[held.toString(), "principal"]]);
    // The last regular expression match keeps its subject alive: make it a harmless one.
    /match/.exec("a harmless subject for the last match");
    const [heldFound, ...cached] = await inHeapSnapshot([held, apiKey, wrongKey, accessToken]);
    expect(tokenKeyed.size).toBe(1);
    expect(heldFound).toBe(true);
    expect(cached).toEqual([false, false, false]);
  });
});
