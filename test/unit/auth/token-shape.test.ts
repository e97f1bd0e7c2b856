import { describe, expect, it } from "vitest";
import { buildChallenge } from "../../../src/auth/challenge.js";
import { AuthError } from "../../../src/auth/principal.js";
import { looksLikeJWT, MAX_TOKEN_LENGTH, parseBearer } from "../../../src/auth/token-shape.js";

const JWT_LIKE = `eyJhbGciOiJSUzI1NiJ9.${"eyJzdWIiOiJ4In0".repeat(5)}.${"c2lnbmF0dXJl".repeat(3)}`;

describe("looksLikeJWT", () => {
  it("is true for three base64url segments of at least 100 characters", () => {
    expect(JWT_LIKE.length).toBeGreaterThanOrEqual(100);
    expect(looksLikeJWT(JWT_LIKE)).toBe(true);
  });

  it("is false for short, two-segment, four-segment or non-base64url tokens", () => {
    expect(looksLikeJWT("a.b.c")).toBe(false);
    expect(looksLikeJWT(JWT_LIKE.replace(/\.[^.]*$/, ""))).toBe(false);
    expect(looksLikeJWT(`${JWT_LIKE}.x`)).toBe(false);
    expect(looksLikeJWT(JWT_LIKE.replace("eyJz", "ey+z"))).toBe(false);
    expect(looksLikeJWT(`mcpgw_${"A".repeat(120)}`)).toBe(false);
  });
});

describe("parseBearer", () => {
  it("reads the token, case-insensitive scheme, one or more spaces", () => {
    expect(parseBearer("Bearer abc")).toEqual({ kind: "token", token: "abc", jwt: false });
    expect(parseBearer("bearer abc")).toEqual({ kind: "token", token: "abc", jwt: false });
    expect(parseBearer("Bearer   abc==")).toEqual({ kind: "token", token: "abc==", jwt: false });
  });

  it("says whether the token is JWT-shaped, and still refuses what RFC 6750 forbids", () => {
    expect(parseBearer(`Bearer ${JWT_LIKE}`)).toEqual({
      kind: "token",
      token: JWT_LIKE,
      jwt: true,
    });
    expect(parseBearer(`Bearer ${JWT_LIKE}.x`)).toMatchObject({ kind: "token", jwt: false });
    expect(parseBearer(`Bearer ${JWT_LIKE.replace("eyJz", "ey,z")}`).kind).toBe("malformed");
  });

  it("tells missing, other scheme and malformed apart", () => {
    expect(parseBearer(undefined)).toEqual({ kind: "missing" });
    expect(parseBearer("")).toEqual({ kind: "missing" });
    expect(parseBearer("Basic dXNlcjpwYXNz")).toEqual({ kind: "other_scheme" });
    expect(parseBearer("abc").kind).toBe("malformed");
    expect(parseBearer("Bearer").kind).toBe("malformed");
    expect(parseBearer("Bearer ").kind).toBe("malformed");
    expect(parseBearer("Bearer a b").kind).toBe("malformed");
    expect(parseBearer('Bearer a"b').kind).toBe("malformed");
    expect(parseBearer(`Bearer ${"a".repeat(MAX_TOKEN_LENGTH + 1)}`)).toMatchObject({
      kind: "malformed",
      reason: expect.stringContaining("longer than"),
    });
  });
});

describe("buildChallenge", () => {
  it("is bare for missing credentials (RFC 6750 §3.1)", () => {
    expect(buildChallenge(new AuthError("missing", "x"))).toBe('Bearer realm="mcpgw"');
  });

  it("carries invalid_token and a description, with resource_metadata when given", () => {
    const challenge = buildChallenge(new AuthError("unknown_key", 'the "key" is not valid'), {
      resourceMetadataUrl: "https://gw.example/.well-known/oauth-protected-resource/mcp",
    });
    expect(challenge).toBe(
      `Bearer realm="mcpgw", resource_metadata="https://gw.example/.well-known/oauth-protected-resource/mcp", error="invalid_token", error_description="the 'key' is not valid"`,
    );
  });

  it("answers a missing scope with 403 insufficient_scope and the scopes needed", () => {
    const error = new AuthError("insufficient_scope", "needs more", {
      requiredScopes: ["mcp:read", "mcp:write"],
    });
    expect(error.status).toBe(403);
    expect(buildChallenge(error)).toBe(
      'Bearer realm="mcpgw", error="insufficient_scope", error_description="needs more", scope="mcp:read mcp:write"',
    );
  });
});
