/**
 * The client's side of the authorization code flow against the embedded authorization server,
 * as MCP clients run it: registration, an authorization URL with PKCE S256, the code exchange.
 */
import { createHash, randomBytes } from "node:crypto";

/** Registers a public client (no secret) for `redirectUri`; resolves with its client_id. */
export async function registerPublicClient(
  issuer: string,
  clientName: string,
  redirectUri: string,
): Promise<string> {
  const res = await fetch(`${issuer}/oauth/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      client_name: clientName,
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    }),
  });
  if (res.status !== 201) throw new Error(`registration: HTTP ${res.status} ${await res.text()}`);
  return ((await res.json()) as { client_id: string }).client_id;
}

export interface AuthorizationRequest {
  url: string;
  verifier: string;
  state: string;
}

/** An authorization URL for `resource`, with a fresh PKCE verifier and state. */
export function authorizationRequest(options: {
  issuer: string;
  clientId: string;
  redirectUri: string;
  scope: string;
  resource: string;
}): AuthorizationRequest {
  const verifier = randomBytes(32).toString("base64url");
  const state = randomBytes(16).toString("base64url");
  const url = new URL(`${options.issuer}/oauth/authorize`);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: options.clientId,
    redirect_uri: options.redirectUri,
    scope: options.scope,
    state,
    resource: options.resource,
    code_challenge: createHash("sha256").update(verifier).digest("base64url"),
    code_challenge_method: "S256",
  }).toString();
  return { url: url.href, verifier, state };
}

/** The code exchange at the token endpoint (a public client: no secret). */
export async function exchangeCode(
  issuer: string,
  options: { clientId: string; code: string; verifier: string; redirectUri: string },
): Promise<Response> {
  return fetch(`${issuer}/oauth/token`, {
    method: "POST",
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: options.code,
      code_verifier: options.verifier,
      redirect_uri: options.redirectUri,
      client_id: options.clientId,
    }),
  });
}
