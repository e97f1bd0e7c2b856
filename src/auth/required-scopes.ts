/**
 * Pipeline step, after authentication: an OAuth access token must carry every scope of
 * the route's required scopes (`auth.oauth.required_scopes`, or the route's own) (contract: Authentication), else 403 insufficient_scope naming
 * the scopes, so that the client can ask its authorization server for them (RFC 6750 §3.1).
 * API keys are not held to required_scopes: an operator grants a key its scopes in the config
 * itself. Per-tool policy (`require_scopes` rules) will be a step beside this one.
 */
import type { Step } from "../pipeline/exchange.js";
import { AuthError } from "./principal.js";

export const requireScopes: Step = ({ principal, route }) => {
  const required = route.oauth?.requiredScopes;
  if (required === undefined || principal?.type !== "oauth") return;
  for (const scope of required) {
    if (!principal.scopes.includes(scope)) {
      const missing = required.filter((needed) => !principal.scopes.includes(needed));
      throw new AuthError("insufficient_scope", `the token lacks the scope ${missing.join(" ")}`, {
        authType: "oauth",
        requiredScopes: required,
        principal,
      });
    }
  }
};
