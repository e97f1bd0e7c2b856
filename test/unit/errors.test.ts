import { describe, expect, it } from "vitest";
import { AuthError } from "../../src/auth/principal.js";
import { AUTH_RESULTS, ERRORS, GatewayError, type GatewayErrorCode } from "../../src/errors.js";

describe("the error registry", () => {
  it("audits every 5xx, a refused Origin, an unknown path, an unknown session, a removed route's stream, protocol refusals and a caller asked to connect an upstream account", () => {
    const codes = Object.keys(ERRORS) as GatewayErrorCode[];
    for (const code of codes) {
      const { status, audited } = ERRORS[code];
      if (status >= 500) expect(audited, code).toBe(true);
    }
    expect(ERRORS.origin_not_allowed.audited).toBe(true);
    expect(codes.filter((code) => ERRORS[code].audited && ERRORS[code].status < 500)).toEqual([
      "not_found",
      "origin_not_allowed",
      "header_mismatch",
      "invalid_envelope",
      "unsupported_protocol_version",
      "upstream_authorization_required",
      "session_not_found",
      "route_removed",
    ]);
  });

  it("gives each GatewayError its status, and states per-code headers and JSON-RPC codes once", () => {
    expect(new GatewayError("body_too_large", "too large").status).toBe(413);
    expect(ERRORS.body_too_large.headers).toEqual({ connection: "close" });
    expect(ERRORS.method_not_allowed.headers).toEqual({ allow: "GET, POST, DELETE" });
    expect(ERRORS.parse_error.jsonRpc).toEqual({
      code: -32700,
      always: true,
      message: "Parse error",
    });
    expect(ERRORS.header_mismatch.jsonRpc).toEqual({ code: -32020, always: true });
    expect(ERRORS.upstream_timeout.jsonRpc).toEqual({ code: -32000 });
  });

  it("answers every failed authentication as RFC 6750 says, from one table", () => {
    const results = Object.keys(AUTH_RESULTS) as (keyof typeof AUTH_RESULTS)[];
    for (const result of results) {
      const error = new AuthError(result, "why");
      expect(error.status, result).toBe(AUTH_RESULTS[result].status);
    }
    expect(results.filter((result) => AUTH_RESULTS[result].status === 401)).toHaveLength(11);
    expect(new AuthError("missing", "x").oauthError).toBeUndefined();
    expect(new AuthError("wrong_route", "x")).toMatchObject({
      status: 401,
      oauthError: "invalid_token",
    });
    expect(new AuthError("insufficient_scope", "x")).toMatchObject({
      status: 403,
      oauthError: "insufficient_scope",
    });
    expect(AUTH_RESULTS.jwks_unavailable).toEqual({
      status: 503,
      unavailable: { error: "temporarily_unavailable", headers: { "retry-after": "5" } },
    });
  });
});
