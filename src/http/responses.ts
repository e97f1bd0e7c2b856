/**
 * The one place where errors become HTTP responses: status, headers and a JSON body, so every
 * failure the gateway answers itself looks the same to clients and operators.
 */
import type { ServerResponse } from "node:http";
import { buildChallenge, type ChallengeContext } from "../auth/challenge.js";
import type { AuthError } from "../auth/principal.js";
import type { GatewayError } from "../errors.js";
import {
  JSONRPC_PARSE_ERROR,
  JSONRPC_SERVER_ERROR,
  type JsonRpcId,
  jsonRpcError,
} from "../mcp/jsonrpc.js";

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
  context: ChallengeContext,
): void {
  if (error.status === 503) {
    // Not a challenge: the token may be fine; the gateway cannot check it right now.
    sendJson(res, 503, errorBody("temporarily_unavailable", error.message), { "retry-after": "5" });
    return;
  }
  sendJson(res, error.status, errorBody(error.oauthError ?? "unauthorized", error.message), {
    "www-authenticate": buildChallenge(error, context),
  });
}

/** Failures answered as a JSON-RPC error when the request was a JSON-RPC request (contract). */
const UPSTREAM_FAILURES = new Set<GatewayError["code"]>([
  "upstream_unreachable",
  "upstream_timeout",
]);

export interface ErrorContext {
  /** Set when the request was a single JSON-RPC request: the answer is then a JSON-RPC error. */
  jsonRpcId?: JsonRpcId;
  /** Extra response headers, e.g. `Allow` or `Connection: close`. */
  headers?: Record<string, string>;
}

export function sendGatewayError(
  res: ServerResponse,
  error: GatewayError,
  context: ErrorContext = {},
): void {
  let body: string;
  if (error.code === "parse_error") {
    body = jsonRpcError(null, JSONRPC_PARSE_ERROR, "Parse error", { error: error.code });
  } else if (context.jsonRpcId !== undefined && UPSTREAM_FAILURES.has(error.code)) {
    body = jsonRpcError(context.jsonRpcId, JSONRPC_SERVER_ERROR, error.message, {
      error: error.code,
    });
  } else {
    body = errorBody(error.code, error.message);
  }
  sendJson(res, error.status, body, context.headers);
}
