/** Who a request acts for, once authenticated, and how authentication can fail. */
import { AUTH_RESULTS } from "../errors.js";

export type AuthType = "oauth" | "api_key" | "none";

/** The audit log's `auth_result` values (contract: Audit log). */
export type AuthResult =
  | "ok"
  | "missing"
  | "malformed"
  | "expired"
  | "not_yet_valid"
  | "bad_signature"
  | "bad_issuer"
  | "bad_audience"
  | "unknown_kid"
  | "insufficient_scope"
  | "unknown_key"
  | "wrong_route"
  | "revoked"
  | "jwks_unavailable";

export interface Principal {
  readonly type: AuthType;
  /** API key id (`auth.keys[].id`). */
  readonly keyId?: string;
  /** Token subject. */
  readonly sub?: string;
  /** RFC 9068 `client_id`, else `azp`. */
  readonly oauthClientId?: string;
  /** Granted scopes; `*` grants every scope. */
  readonly scopes: readonly string[];
  /** The same, space-separated, as OAuth's `scope` and the audit log's `scopes` write them. */
  readonly scope: string;
  /** The route paths a bound API key may call (`auth.keys[].routes`); undefined: every route. */
  readonly routes?: readonly string[];
}

export const ANONYMOUS: Principal = Object.freeze({
  type: "none",
  scopes: Object.freeze([]),
  scope: "",
});

/**
 * A failed authentication. `result` is the audit code; the HTTP status and the RFC 6750
 * challenge follow from it, so every failure is answered the same way wherever it is raised.
 */
export class AuthError extends Error {
  readonly result: Exclude<AuthResult, "ok">;
  readonly authType: AuthType;
  /** For `insufficient_scope`: the scopes the request needs. */
  readonly requiredScopes: readonly string[];
  /** For `insufficient_scope`: who the valid token belongs to, for the audit log. */
  readonly principal: Principal | undefined;
  /** A refusal of a JSON-RPC call by the policy: the body is a JSON-RPC error (contract). */
  readonly jsonRpc: boolean;

  constructor(
    result: Exclude<AuthResult, "ok">,
    description: string,
    options: {
      authType?: AuthType;
      requiredScopes?: readonly string[];
      principal?: Principal | undefined;
      cause?: unknown;
      jsonRpc?: boolean;
    } = {},
  ) {
    super(description, { cause: options.cause });
    this.name = "AuthError";
    this.result = result;
    this.authType = options.authType ?? "none";
    this.requiredScopes = options.requiredScopes ?? [];
    this.principal = options.principal;
    this.jsonRpc = options.jsonRpc ?? false;
  }

  /** RFC 6750 §3.1, as AUTH_RESULTS in errors.ts states it for each result. */
  get status(): 401 | 403 | 503 {
    return AUTH_RESULTS[this.result].status;
  }

  get oauthError(): "invalid_token" | "insufficient_scope" | undefined {
    return AUTH_RESULTS[this.result].oauthError;
  }
}
