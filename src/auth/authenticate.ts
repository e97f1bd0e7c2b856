/** The authentication step of the request pipeline: Authorization header -> Principal. */
import type { KeyStore } from "./api-keys.js";
import { ANONYMOUS, AuthError, type Principal } from "./principal.js";
import { parseBearer } from "./token-shape.js";

export interface Authenticator {
  /**
   * The request's principal, or AuthError (thrown, or as the rejection). Credentials verified
   * before come back synchronously; only a first verification returns a promise.
   */
  authenticate(authorization: string | undefined): Principal | Promise<Principal>;
}

/** Verifies a JWT access token (the OAuth resource server plugs in here). */
export interface AccessTokenVerifier {
  verifyAccessToken(token: string): Principal | Promise<Principal>;
}

/** `auth.enabled: false`: every request acts as the anonymous principal. */
export const unauthenticated: Authenticator = {
  authenticate: () => ANONYMOUS,
};

/**
 * Dispatches on token shape (contract: Authentication): a JWT-shaped token goes to the access
 * token verifier when one is configured; everything else is looked up as an API key.
 */
export class BearerAuthenticator implements Authenticator {
  readonly #keys: KeyStore | undefined;
  readonly #accessTokens: AccessTokenVerifier | undefined;

  constructor(sources: { keys?: KeyStore; accessTokens?: AccessTokenVerifier }) {
    this.#keys = sources.keys;
    this.#accessTokens = sources.accessTokens;
  }

  authenticate(authorization: string | undefined): Principal | Promise<Principal> {
    const parsed = parseBearer(authorization);
    switch (parsed.kind) {
      case "missing":
        throw new AuthError("missing", "this endpoint needs Authorization: Bearer <token>");
      case "other_scheme":
        // RFC 6750 §3.1: a client that tried another scheme is answered like one that sent none.
        throw new AuthError("missing", "only the Bearer authentication scheme is supported");
      case "malformed":
        throw new AuthError("malformed", parsed.reason);
      case "token":
        if (this.#accessTokens && parsed.jwt) {
          return this.#accessTokens.verifyAccessToken(parsed.token);
        }
        if (this.#keys) return this.#keys.verify(parsed.token);
        // Contract: with no keys configured, an opaque token is invalid_token.
        throw new AuthError("malformed", "the token is not a JWT access token", {
          authType: "oauth",
        });
    }
  }
}
