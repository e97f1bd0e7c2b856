/**
 * Errors the gateway answers itself. Each carries a stable `code` from a closed union so that
 * callers switch on codes, never on messages, and one place (`http/responses.ts`) turns
 * an error into status, headers and body.
 */
export type GatewayErrorCode =
  | "not_found"
  | "method_not_allowed"
  | "origin_not_allowed"
  | "body_too_large"
  | "parse_error"
  | "request_timeout"
  | "upstream_unreachable"
  | "upstream_timeout"
  | "audit_unavailable"
  | "shutting_down"
  | "server_error";

const STATUS: Record<GatewayErrorCode, number> = {
  not_found: 404,
  method_not_allowed: 405,
  origin_not_allowed: 403,
  body_too_large: 413,
  parse_error: 400,
  request_timeout: 408,
  upstream_unreachable: 502,
  upstream_timeout: 504,
  audit_unavailable: 503,
  shutting_down: 503,
  server_error: 500,
};

export class GatewayError extends Error {
  readonly code: GatewayErrorCode;
  readonly status: number;

  constructor(code: GatewayErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "GatewayError";
    this.code = code;
    this.status = STATUS[code];
  }
}

/** A configuration that cannot be used. `problems` are complete `FILE:LINE:COL key: message` lines. */
export class ConfigError extends Error {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/** sysexits(3) codes the CLI uses; the contract fixes 78 for configuration errors. */
export const EXIT = { ok: 0, fatal: 1, usage: 64, config: 78 } as const;
