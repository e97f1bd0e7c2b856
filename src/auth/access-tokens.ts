/**
 * Verifies OAuth 2.1 JWT access tokens (RFC 9068) locally against the authorization server's
 * JWKS. MCP clients send one access token for its whole lifetime, so a verified token is
 * cached (keyed by a keyed hash of the token) until it expires: a repeated token costs a map
 * lookup, not a signature check.
 */
import { type JWTPayload, type JWTVerifyGetKey, errors as joseErrors, jwtVerify } from "jose";
import type { OAuthConfig } from "../config/schema.js";
import { setBounded } from "../lib/bounded-map.js";
import type { AccessTokenVerifier } from "./authenticate.js";
import { ASYMMETRIC_ALGORITHMS, JwksUnavailableError } from "./jwks.js";
import { AuthError, type AuthResult, type Principal } from "./principal.js";
import { digestToken } from "./token-digest.js";

/** RFC 9068 §2.1 `at+jwt`, and plain `JWT` as most identity providers still send. */
const ACCEPTED_TYPES = new Set(["jwt", "at+jwt", "application/at+jwt"]);

interface CachedPrincipal {
  principal: Principal;
  /** The token's `jti`, asked of `KeySource.isRevoked` on every use. */
  jti: string | undefined;
  /** Until when (ms since epoch) the verification holds: the token's exp plus leeway. */
  validUntil: number;
}

export interface AccessTokenOptions {
  /** Bound on cached verifications. Default 10,000. */
  maxCachedTokens?: number;
  /** Called on every lookup of a presented token: hit when its outcome was cached (metrics). */
  onLookup?: (hit: boolean) => void;
  now?: () => number;
}

/** Where the verification keys come from: a fetched JWKS, or the embedded server's own keys. */
export interface KeySource {
  readonly getKey: JWTVerifyGetKey;
  /**
   * The embedded authorization server's word on a token it issued: revoked (itself, or its
   * grant through its refresh token) since. Asked on every use, cached verifications too.
   */
  isRevoked?(jti: string): boolean;
}

export class OAuthVerifier implements AccessTokenVerifier {
  readonly jwks: KeySource;
  readonly #config: Required<Pick<OAuthConfig, "issuer" | "audience">> & OAuthConfig;
  readonly #cache = new Map<string, CachedPrincipal>();
  readonly #maxCachedTokens: number;
  readonly #now: () => number;
  readonly #onLookup: AccessTokenOptions["onLookup"];

  constructor(config: OAuthConfig, jwks: KeySource, options: AccessTokenOptions = {}) {
    if (config.issuer === undefined || config.audience === undefined) {
      throw new Error("auth.oauth: issuer and audience are required");
    }
    this.#config = config as Required<Pick<OAuthConfig, "issuer" | "audience">> & OAuthConfig;
    this.jwks = jwks;
    this.#maxCachedTokens = options.maxCachedTokens ?? 10_000;
    this.#now = options.now ?? Date.now;
    this.#onLookup = options.onLookup;
  }

  verifyAccessToken(token: string): Principal | Promise<Principal> {
    const digest = digestToken(token);
    const cached = this.#cache.get(digest);
    const fresh = cached !== undefined && cached.validUntil > this.#now();
    this.#onLookup?.(fresh);
    if (cached) {
      if (fresh) {
        if (cached.jti !== undefined && this.jwks.isRevoked?.(cached.jti)) {
          throw revoked(cached.principal);
        }
        return cached.principal;
      }
      this.#cache.delete(digest);
    }
    return this.#verify(token, digest);
  }

  async #verify(token: string, digest: string): Promise<Principal> {
    const { issuer, audience, leeway } = this.#config;
    let payload: JWTPayload;
    try {
      const verified = await jwtVerify(token, this.jwks.getKey, {
        issuer,
        audience,
        algorithms: ASYMMETRIC_ALGORITHMS,
        clockTolerance: leeway / 1000,
        requiredClaims: ["exp"],
        currentDate: new Date(this.#now()),
      });
      payload = verified.payload;
      const type = verified.protectedHeader.typ;
      if (type !== undefined && !ACCEPTED_TYPES.has(type.toLowerCase())) {
        throw new AuthError("malformed", `token type "${type}" is not an access token`, {
          authType: "oauth",
        });
      }
    } catch (error) {
      throw toAuthError(error);
    }
    // jose checks iat only when maxTokenAge is set; a token issued in the future is refused too.
    if (typeof payload.iat === "number" && payload.iat * 1000 > this.#now() + leeway) {
      throw new AuthError("not_yet_valid", "the token's iat is in the future", {
        authType: "oauth",
      });
    }

    const jti = typeof payload.jti === "string" ? payload.jti : undefined;
    // Whether the token's scopes are enough is the authorization step's question (required-scopes.ts).
    const principal = principalOf(payload);
    if (jti !== undefined && this.jwks.isRevoked?.(jti)) throw revoked(principal);
    this.#remember(digest, { principal, jti, validUntil: (payload.exp as number) * 1000 + leeway });
    return principal;
  }

  #remember(digest: string, entry: CachedPrincipal): void {
    setBounded(this.#cache, digest, entry, this.#maxCachedTokens);
  }
}

/** A revoked token names its holder in the audit line, as a token lacking a scope does. */
function revoked(principal: Principal): AuthError {
  return new AuthError("revoked", "the token has been revoked", { authType: "oauth", principal });
}

function principalOf(payload: JWTPayload): Principal {
  const scopes = scopesOf(payload);
  const principal: { -readonly [K in keyof Principal]: Principal[K] } = {
    type: "oauth",
    scopes,
    scope: scopes.join(" "),
  };
  if (typeof payload.sub === "string") principal.sub = payload.sub;
  // RFC 9068 §2.2 client_id; Keycloak and some others only send azp.
  const clientId = payload.client_id ?? payload.azp;
  if (typeof clientId === "string") principal.oauthClientId = clientId;
  return Object.freeze(principal);
}

/** RFC 9068 §2.2.3 `scope` (space-separated); `scp` (array or string) as Okta and Entra send it. */
function scopesOf(payload: JWTPayload): string[] {
  const scopes = new Set<string>();
  for (const claim of [payload.scope, payload.scp]) {
    const list: unknown[] =
      typeof claim === "string" ? claim.split(" ") : Array.isArray(claim) ? claim : [];
    for (const scope of list) if (typeof scope === "string" && scope !== "") scopes.add(scope);
  }
  return [...scopes];
}

const oauth = { authType: "oauth" } as const;

/** One audit `auth_result` per failure (contract: Audit log). */
function toAuthError(error: unknown): AuthError {
  if (error instanceof AuthError) return error;
  const fail = (result: Exclude<AuthResult, "ok">, description: string) =>
    new AuthError(result, description, { ...oauth, cause: error });
  if (error instanceof JwksUnavailableError) {
    return fail("jwks_unavailable", "the authorization server's keys are unavailable");
  }
  if (error instanceof joseErrors.JWTExpired) return fail("expired", "the token has expired");
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case "nbf":
        return fail("not_yet_valid", "the token is not valid yet (nbf)");
      case "iss":
        return fail("bad_issuer", "the token was issued by another issuer");
      case "aud":
        return fail("bad_audience", "the token is for another audience");
      default:
        return fail("malformed", `the token's ${error.claim} claim is invalid: ${error.reason}`);
    }
  }
  if (error instanceof joseErrors.JWKSNoMatchingKey) {
    return fail(
      "unknown_kid",
      "the token is signed with a key the authorization server does not publish",
    );
  }
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) {
    return fail("bad_signature", "the token's signature is invalid");
  }
  if (error instanceof joseErrors.JOSEAlgNotAllowed) {
    return fail("bad_signature", "the token's signing algorithm is not allowed");
  }
  return fail("malformed", "the token is not a well-formed JWT");
}
