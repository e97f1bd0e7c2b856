/**
 * Errors the gateway answers itself. Each carries a stable `code` from a closed union so that
 * callers switch on codes, never on messages. What a code means on the wire (status, headers,
 * a JSON-RPC error code, the audit line's `error`) is stated once, in ERRORS below; one place
 * (`http/responses.ts`) turns an error into status, headers and body. A failed authentication
 * is stated the same way, by its audit `auth_result`, in AUTH_RESULTS. docs/errors.md lists them.
 */
import type { AuthResult } from "./auth/principal.js";
import {
  JSONRPC_FORBIDDEN,
  JSONRPC_HEADER_MISMATCH,
  JSONRPC_INVALID_PARAMS,
  JSONRPC_PARSE_ERROR,
  JSONRPC_SERVER_ERROR,
  JSONRPC_SESSION_NOT_FOUND,
  JSONRPC_UNSUPPORTED_PROTOCOL_VERSION,
  JSONRPC_URL_ELICITATION_REQUIRED,
} from "./mcp/jsonrpc.js";
export type GatewayErrorCode =
  | "not_found"
  | "method_not_allowed"
  | "origin_not_allowed"
  | "body_too_large"
  | "parse_error"
  | "header_mismatch"
  | "invalid_envelope"
  | "unsupported_protocol_version"
  | "request_timeout"
  | "upstream_unreachable"
  | "upstream_timeout"
  | "upstream_busy"
  | "upstream_auth_failed"
  | "upstream_authorization_required"
  | "session_not_found"
  | "route_removed"
  | "policy_denied"
  | "rate_limited"
  | "audit_unavailable"
  | "shutting_down"
  | "server_error";

/** How the gateway answers one error code. */
export interface ErrorSpec {
  status: number;
  /**
   * Written to the audit line as `error`: the gateway, not the upstream or the caller, ended
   * the exchange. Every 5xx is, and so is a refused browser Origin (DNS rebinding attempts).
   */
  audited: boolean;
  /** Extra response headers. */
  headers?: Readonly<Record<string, string>>;
  /**
   * Answered as a JSON-RPC error with this code when the request was a single JSON-RPC
   * message, or `always` (then with id null when there is none: a body that is not JSON,
   * JSON-RPC §5.1). `message` replaces the error's own as the JSON-RPC message.
   */
  jsonRpc?: { code: number; always?: boolean; message?: string };
}

export const ERRORS: Readonly<Record<GatewayErrorCode, ErrorSpec>> = {
  // A path no route has (scanners, typos): audited, like every request to the listener.
  not_found: { status: 404, audited: true },
  method_not_allowed: { status: 405, audited: false, headers: { allow: "GET, POST, DELETE" } },
  origin_not_allowed: { status: 403, audited: true },
  // The body was not read to its end; the connection cannot carry another request.
  body_too_large: { status: 413, audited: false, headers: { connection: "close" } },
  parse_error: {
    status: 400,
    audited: false,
    jsonRpc: { code: JSONRPC_PARSE_ERROR, always: true, message: "Parse error" },
  },
  // MCP 2026-07-28: Mcp-Method / Mcp-Name / MCP-Protocol-Version disagree with the body.
  header_mismatch: {
    status: 400,
    audited: true,
    jsonRpc: { code: JSONRPC_HEADER_MISMATCH, always: true },
  },
  // MCP 2026-07-28: the header names the new era, the body has no version in `_meta`.
  invalid_envelope: {
    status: 400,
    audited: true,
    jsonRpc: { code: JSONRPC_INVALID_PARAMS, always: true },
  },
  // A route with protocol.min_version, and a request of an older revision.
  unsupported_protocol_version: {
    status: 400,
    audited: true,
    jsonRpc: { code: JSONRPC_UNSUPPORTED_PROTOCOL_VERSION, always: true },
  },
  request_timeout: { status: 408, audited: false },
  // Contract: a JSON-RPC error object where the request was JSON-RPC and the upstream failed.
  upstream_unreachable: { status: 502, audited: true, jsonRpc: { code: JSONRPC_SERVER_ERROR } },
  upstream_timeout: { status: 504, audited: true, jsonRpc: { code: JSONRPC_SERVER_ERROR } },
  // A stdio route at max_sessions, or backing off after its command kept failing to start.
  upstream_busy: { status: 503, audited: true, jsonRpc: { code: JSONRPC_SERVER_ERROR } },
  // No credentials towards the upstream (its token endpoint refused, failed or timed out);
  // audit upstream_auth says why. Nothing was sent upstream.
  upstream_auth_failed: {
    status: 502,
    audited: true,
    jsonRpc: { code: JSONRPC_SERVER_ERROR },
  },
  // authorization_code: the caller has connected no account yet. A JSON-RPC result-level
  // error (200), as an MCP server sends it, so that clients read the connect URL (MCP
  // 2025-11-25 URL elicitation, -32042).
  upstream_authorization_required: {
    status: 200,
    audited: true,
    jsonRpc: { code: JSONRPC_URL_ELICITATION_REQUIRED, always: true },
  },
  // An Mcp-Session-Id that the gateway did not issue, or whose session has ended (the MCP
  // transport's answer: the client starts a new session). Nothing reaches an upstream.
  session_not_found: {
    status: 404,
    audited: true,
    jsonRpc: { code: JSONRPC_SESSION_NOT_FOUND },
  },
  // A stream whose route a reload removed, or whose upstream it replaced: closed.
  route_removed: { status: 404, audited: true },
  // Refused by a policy rule (audit: action deny and the rule).
  policy_denied: { status: 403, audited: false, jsonRpc: { code: JSONRPC_FORBIDDEN } },
  // Over a rate limit (audit: action deny, rule the limit's id); Retry-After says when.
  rate_limited: { status: 429, audited: false, jsonRpc: { code: JSONRPC_SERVER_ERROR } },
  audit_unavailable: { status: 503, audited: true },
  shutting_down: { status: 503, audited: true },
  server_error: { status: 500, audited: true },
};

/** How a failed authentication is answered (RFC 6750 §3.1), by its audit `auth_result`. */
export interface AuthResultSpec {
  status: 401 | 403 | 503;
  /**
   * The RFC 6750 error code of the challenge and body. None for a request without credentials
   * (the bare challenge tells a client it must authenticate) and for a 503.
   */
  oauthError?: "invalid_token" | "insufficient_scope";
  /** Not the token's fault: no challenge, this body `error` and these headers instead. */
  unavailable?: { error: string; headers: Readonly<Record<string, string>> };
}

const INVALID_TOKEN: AuthResultSpec = { status: 401, oauthError: "invalid_token" };

export const AUTH_RESULTS: Readonly<Record<Exclude<AuthResult, "ok">, AuthResultSpec>> = {
  missing: { status: 401 },
  malformed: INVALID_TOKEN,
  expired: INVALID_TOKEN,
  not_yet_valid: INVALID_TOKEN,
  bad_signature: INVALID_TOKEN,
  bad_issuer: INVALID_TOKEN,
  bad_audience: INVALID_TOKEN,
  unknown_kid: INVALID_TOKEN,
  unknown_key: INVALID_TOKEN,
  // A key bound to other routes: like a token for another audience.
  wrong_route: INVALID_TOKEN,
  // Revoked at the embedded authorization server (the token, or its grant).
  revoked: INVALID_TOKEN,
  insufficient_scope: { status: 403, oauthError: "insufficient_scope" },
  // The JWKS cannot be fetched: the token may be good, and a 401 would send the client through
  // its authorization server for nothing.
  jwks_unavailable: {
    status: 503,
    unavailable: { error: "temporarily_unavailable", headers: { "retry-after": "5" } },
  },
};

export class GatewayError extends Error {
  readonly code: GatewayErrorCode;
  readonly status: number;
  /** Seconds for a Retry-After header (503 while a stdio command backs off). */
  readonly retryAfter: number | undefined;
  /** Added to a JSON-RPC error's `data` (the versions a route supports, say). */
  readonly data: Readonly<Record<string, unknown>> | undefined;

  constructor(
    code: GatewayErrorCode,
    message: string,
    options?: { cause?: unknown; retryAfter?: number; data?: Record<string, unknown> },
  ) {
    super(message, options);
    this.name = "GatewayError";
    this.code = code;
    this.status = ERRORS[code].status;
    this.retryAfter = options?.retryAfter;
    this.data = options?.data;
  }
}

/**
 * A configuration that cannot be used. `problems` are complete `FILE:LINE:COL key: message`
 * lines: a line break that a key or value brings into one is written as its escape (`\n`).
 */
export class ConfigError extends Error {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    const lines = problems.map((problem) => problem.replace(/[\n\r\u2028\u2029]/g, escapeBreak));
    super(lines.join("\n"));
    this.name = "ConfigError";
    this.problems = lines;
  }
}

function escapeBreak(char: string): string {
  if (char === "\n") return "\\n";
  if (char === "\r") return "\\r";
  return `\\u${char.charCodeAt(0).toString(16)}`;
}

/** sysexits(3) codes the CLI uses; the contract fixes 78 for configuration errors. */
export const EXIT = { ok: 0, fatal: 1, usage: 64, config: 78 } as const;
