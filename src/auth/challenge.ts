/** RFC 6750 §3 `WWW-Authenticate` challenges. */
import type { AuthError } from "./principal.js";

export const REALM = "mcpgw";

export interface ChallengeContext {
  /** RFC 9728 §5.1: absolute URL of the protected resource metadata; only while OAuth is on. */
  resourceMetadataUrl?: string;
}

export function buildChallenge(error: AuthError, context: ChallengeContext = {}): string {
  const params = [`realm="${REALM}"`];
  if (context.resourceMetadataUrl) {
    params.push(`resource_metadata="${quote(context.resourceMetadataUrl)}"`);
  }
  const code = error.oauthError;
  if (code) {
    params.push(`error="${code}"`, `error_description="${quote(error.message)}"`);
    if (code === "insufficient_scope")
      params.push(`scope="${quote(error.requiredScopes.join(" "))}"`);
  }
  return `Bearer ${params.join(", ")}`;
}

/** RFC 9110 §5.6.4 quoted-string; RFC 6750 §3 forbids `"` and `\` in these values anyway. */
function quote(value: string): string {
  return value.replace(/[\\"]/g, "'").replace(/[^\x20-\x7e]/g, "?");
}
