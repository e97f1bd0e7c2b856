/**
 * Properties of the token-shape dispatch (contract: Authentication): a token of three
 * dot-separated base64url segments and at least 100 characters is a JWT for the OAuth verifier,
 * anything else an opaque API key. Checked against an independent model of that rule.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { KeyStore } from "../../../src/auth/api-keys.js";
import { type AccessTokenVerifier, BearerAuthenticator } from "../../../src/auth/authenticate.js";
import { AuthError, type Principal } from "../../../src/auth/principal.js";
import { looksLikeJWT } from "../../../src/auth/token-shape.js";

const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** The documented rule, written without a regular expression. */
function modelLooksLikeJWT(token: string): boolean {
  if (token.length < 100) return false;
  const segments = token.split(".");
  return (
    segments.length === 3 &&
    segments.every(
      (segment) => segment.length > 0 && [...segment].every((char) => BASE64URL.includes(char)),
    )
  );
}

const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");

/** A JWT as an issuer writes one: a JSON header and payload and a signature, base64url each. */
const jwt = fc
  .tuple(
    fc.record(
      {
        alg: fc.constantFrom("RS256", "ES256", "PS256", "EdDSA", "HS256", "none"),
        typ: fc.constantFrom("JWT", "at+jwt", "application/at+jwt"),
        kid: fc.string({ maxLength: 20 }),
      },
      { requiredKeys: ["alg"] },
    ),
    fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 4 }),
    fc.uint8Array({ minLength: 1, maxLength: 100, size: "max" }),
  )
  .map(
    ([header, payload, signature]) =>
      `${base64url(header)}.${base64url(payload)}.${Buffer.from(signature).toString("base64url")}`,
  );

/** Three non-empty base64url segments of 95 to 105 characters in all. */
const aroundTheLimit = fc
  .tuple(
    fc.integer({ min: 95, max: 105 }).chain((length) =>
      fc.string({
        unit: fc.constantFrom(...BASE64URL),
        minLength: length - 2,
        maxLength: length - 2,
      }),
    ),
    fc.nat(),
    fc.nat(),
  )
  .map(([text, a, b]) => {
    const first = 1 + (a % (text.length - 2));
    const second = first + 1 + (b % (text.length - first - 1));
    return `${text.slice(0, first)}.${text.slice(first, second)}.${text.slice(second)}`;
  });

/** A JWT-shaped token of at least 100 characters. */
const longJwt = jwt.filter((token) => token.length >= 100);

/** Characters a JWT's segments cannot hold, the b64token ones and `=` first. */
const NEAR_MISSES = ["+", "/", "=", "~", "%", " ", "\n", "\t", "é", "\u{1f511}", "\0"];

/**
 * Strings near the rule's edges: mostly three segments of base64url, some empty, some with one
 * near-miss character, some other number of segments; about 100 characters in all.
 */
const nearJwt = (() => {
  const segment = fc.oneof(
    { weight: 1, arbitrary: fc.constant("") },
    {
      weight: 8,
      arbitrary: fc.string({
        unit: fc.oneof(
          { weight: 80, arbitrary: fc.constantFrom(...BASE64URL) },
          { weight: 1, arbitrary: fc.constantFrom(...NEAR_MISSES) },
        ),
        minLength: 1,
        maxLength: 70,
        size: "max",
      }),
    },
  );
  return fc
    .oneof(
      { weight: 3, arbitrary: fc.tuple(segment, segment, segment) },
      { weight: 1, arbitrary: fc.array(segment, { minLength: 1, maxLength: 5 }) },
    )
    .map((segments) => segments.join("."));
})();

/** A character a base64url segment cannot hold (a dot adds a segment, so it is one too). */
const notBase64url = fc.oneof(
  fc.constantFrom(".", ...NEAR_MISSES),
  fc
    .string({ unit: "binary", minLength: 1, maxLength: 1 })
    .filter((char) => !BASE64URL.includes(char)),
);

describe("looksLikeJWT (properties)", () => {
  it("takes a token of three base64url segments for a JWT exactly when it has 100+ characters", () => {
    fc.assert(
      fc.property(fc.oneof(jwt, aroundTheLimit), (token) => {
        expect(looksLikeJWT(token)).toBe(token.length >= 100);
      }),
      { numRuns: 300 },
    );
  });

  it("refuses a JWT with any character outside base64url inserted, or a segment dropped", () => {
    fc.assert(
      fc.property(longJwt, notBase64url, fc.nat(), (token, char, at) => {
        const index = at % (token.length + 1);
        expect(looksLikeJWT(token.slice(0, index) + char + token.slice(index))).toBe(false);
        const [header, payload, signature] = token.split(".") as [string, string, string];
        const twoSegments = `${header}.${payload}${signature}`;
        expect(looksLikeJWT(twoSegments)).toBe(false);
        expect(looksLikeJWT(`${twoSegments}.${signature}.${signature}`)).toBe(false);
        expect(looksLikeJWT(`${header}..${signature}${payload}`)).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it("is false for base64url segments of any length joined by other than exactly two dots", () => {
    const segment = fc.string({ unit: fc.constantFrom(...BASE64URL), maxLength: 60, size: "max" });
    fc.assert(
      fc.property(
        fc.array(segment, { minLength: 1, maxLength: 6 }).filter((parts) => parts.length !== 3),
        (parts) => {
          expect(looksLikeJWT(parts.join("."))).toBe(false);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("agrees with the model of the rule on any string, and never throws", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          { weight: 6, arbitrary: nearJwt },
          longJwt,
          fc.string({ maxLength: 200 }),
          fc.string({ unit: "binary", maxLength: 200 }),
          fc.string({ unit: "grapheme", maxLength: 120 }),
        ),
        (text) => {
          expect(looksLikeJWT(text)).toBe(modelLooksLikeJWT(text));
        },
      ),
      { numRuns: 1000 },
    );
  });
});

function thrown(action: () => unknown): unknown {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(AuthError);
    return error;
  }
  throw new Error("expected an AuthError");
}

describe("BearerAuthenticator dispatch (properties)", () => {
  const principal = (type: Principal["type"], token: string): Principal => ({
    type,
    sub: token,
    scopes: [],
    scope: "",
  });
  const verifier: AccessTokenVerifier = {
    verifyAccessToken: (token) => principal("oauth", token),
  };
  const keys = { verify: (token: string) => principal("api_key", token) } as unknown as KeyStore;
  /** b64token characters only: every such token reaches the dispatch. */
  const token = fc.oneof(
    longJwt,
    nearJwt.map((text) => text.replace(/[^A-Za-z0-9._~+/-]/g, "A")).filter((text) => text !== ""),
    fc.string({ unit: fc.constantFrom(...`${BASE64URL}.~+/`), minLength: 1, maxLength: 150 }),
  );

  it("sends a JWT-shaped token to the verifier and every other token to the API keys", () => {
    const both = new BearerAuthenticator({ keys, accessTokens: verifier });
    const keysOnly = new BearerAuthenticator({ keys });
    const oauthOnly = new BearerAuthenticator({ accessTokens: verifier });
    fc.assert(
      fc.property(token, (value) => {
        const shaped = modelLooksLikeJWT(value);
        const header = `Bearer ${value}`;
        expect(both.authenticate(header)).toEqual(principal(shaped ? "oauth" : "api_key", value));
        // Without an OAuth verifier, even a JWT-shaped token is looked up as a key.
        expect(keysOnly.authenticate(header)).toEqual(principal("api_key", value));
        if (shaped) {
          expect(oauthOnly.authenticate(header)).toEqual(principal("oauth", value));
        } else {
          // Contract: with no keys configured, an opaque token is invalid_token.
          expect(thrown(() => oauthOnly.authenticate(header))).toMatchObject({
            result: "malformed",
            oauthError: "invalid_token",
          });
        }
      }),
      { numRuns: 500 },
    );
  });
});
