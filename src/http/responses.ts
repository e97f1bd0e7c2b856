/**
 * The one place where errors become HTTP responses: status, headers and a JSON body, so every
 * failure the gateway answers itself looks the same to clients and operators.
 */
import type { ServerResponse } from "node:http";
import { buildChallenge, type ChallengeContext } from "../auth/challenge.js";
import type { AuthError } from "../auth/principal.js";
import { AUTH_RESULTS, ERRORS, type GatewayError } from "../errors.js";
import { JSONRPC_FORBIDDEN, type JsonRpcId, jsonRpcError } from "../mcp/jsonrpc.js";

export function sendJson(
  res: ServerResponse,
  status: number,
  body: string,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, {
    ...headers,
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
    "cache-control": "no-store",
  });
  res.end(body);
}

/** `{"error": "...", "error_description": "..."}` (contract: Responses). */
export function errorBody(error: string, description: string): string {
  return JSON.stringify({ error, error_description: description });
}

export function sendAuthError(
  res: ServerResponse,
  error: AuthError,
  context: ChallengeContext & { jsonRpcId?: JsonRpcId },
): void {
  const spec = AUTH_RESULTS[error.result];
  if (spec.unavailable) {
    // Not a challenge: the token may be fine; the gateway cannot check it right now.
    sendJson(res, spec.status, errorBody(spec.unavailable.error, error.message), {
      ...spec.unavailable.headers,
    });
    return;
  }
  const code = error.oauthError ?? "unauthorized";
  // The policy's refusal of a JSON-RPC call answers in JSON-RPC, with the same challenge.
  const body =
    error.jsonRpc && context.jsonRpcId !== undefined
      ? jsonRpcError(context.jsonRpcId, JSONRPC_FORBIDDEN, error.message, {
          error: code,
          scope: error.requiredScopes.join(" "),
        })
      : errorBody(code, error.message);
  sendJson(res, error.status, body, { "www-authenticate": buildChallenge(error, context) });
}

export interface ErrorContext {
  /** Set when the request was a single JSON-RPC request: the answer may then be a JSON-RPC error. */
  jsonRpcId?: JsonRpcId;
}

/** Status, headers and body as the error registry (`ERRORS` in errors.ts) says. */
export function sendGatewayError(
  res: ServerResponse,
  error: GatewayError,
  context: ErrorContext = {},
): void {
  const spec = ERRORS[error.code];
  const { jsonRpc } = spec;
  let body: string;
  if (jsonRpc && (jsonRpc.always || context.jsonRpcId !== undefined)) {
    body = jsonRpcError(context.jsonRpcId ?? null, jsonRpc.code, jsonRpc.message ?? error.message, {
      error: error.code,
      ...error.data,
    });
  } else {
    body = errorBody(error.code, error.message);
  }
  const headers =
    error.retryAfter === undefined
      ? spec.headers
      : { ...spec.headers, "retry-after": String(Math.max(1, Math.ceil(error.retryAfter))) };
  sendJson(res, error.status, body, headers);
}
