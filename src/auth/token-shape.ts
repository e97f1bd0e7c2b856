/**
 * Token-shape dispatch (contract: Authentication). A bearer token of three dot-separated
 * base64url segments and at least 100 characters is a JWT for the OAuth verifier; anything
 * else is an opaque API key. An opaque key shaped like a JWT would be sent to the verifier,
 * which is why `mcpgw gen-key` never produces dots.
 */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

export function looksLikeJWT(token: string): boolean {
  return token.length >= 100 && JWT_SHAPE.test(token);
}

/** Longest bearer token accepted; anything longer is rejected before any hashing. */
export const MAX_TOKEN_LENGTH = 8192;

/** RFC 6750 §2.1 b64token. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

export type BearerParse =
  | { kind: "missing" }
  | { kind: "other_scheme" }
  | { kind: "malformed"; reason: string }
  /** `jwt`: the token looksLikeJWT, decided here once for the dispatch. */
  | { kind: "token"; token: string; jwt: boolean };

/**
 * Reads `Authorization: Bearer <token>`. The scheme is case-insensitive (RFC 9110 §11.1) and
 * RFC 6750 §2.1 allows one or more spaces after it.
 */
export function parseBearer(header: string | undefined): BearerParse {
  if (header === undefined || header === "") return { kind: "missing" };
  // The form nearly every client sends, checked without the general pattern below.
  if (header.startsWith("Bearer ") && header.charCodeAt(7) !== 32)
    return checkToken(header.slice(7));
  const match = /^([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)(?: +(.*))?$/.exec(header);
  if (!match) return { kind: "malformed", reason: "Authorization header must be 'Bearer <token>'" };
  const [, scheme, credentials] = match as unknown as [string, string, string | undefined];
  if (scheme.toLowerCase() !== "bearer") {
    // A value without a space is a bare token with no scheme, not another scheme.
    return credentials === undefined
      ? { kind: "malformed", reason: "Authorization header must be 'Bearer <token>'" }
      : { kind: "other_scheme" };
  }
  if (credentials === undefined || credentials === "") {
    return { kind: "malformed", reason: "the Bearer token is empty" };
  }
  return checkToken(credentials);
}

function checkToken(credentials: string): BearerParse {
  if (credentials.length > MAX_TOKEN_LENGTH) {
    return {
      kind: "malformed",
      reason: `the Bearer token is longer than ${MAX_TOKEN_LENGTH} characters`,
    };
  }
  // A JWT's characters are all b64token characters: one scan of a long token is enough.
  const jwt = looksLikeJWT(credentials);
  if (!jwt && !B64TOKEN.test(credentials)) {
    return { kind: "malformed", reason: "the Bearer token has characters RFC 6750 does not allow" };
  }
  return { kind: "token", token: credentials, jwt };
}
