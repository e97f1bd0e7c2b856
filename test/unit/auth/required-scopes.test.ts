import { describe, expect, it } from "vitest";
import type { Principal } from "../../../src/auth/principal.js";
import { requireScopes } from "../../../src/auth/required-scopes.js";
import type { Exchange, PipelineContext } from "../../../src/pipeline/exchange.js";

const context = {} as PipelineContext;

/** The two things the step reads: the principal, and the route's required scopes. */
function exchangeOf(principal: Principal, requiredScopes?: string[]): Exchange {
  return {
    principal,
    route: { oauth: requiredScopes && { requiredScopes } },
  } as unknown as Exchange;
}

function oauthPrincipal(scopes: string[]): Principal {
  return { type: "oauth", sub: "alice", oauthClientId: "app", scopes, scope: scopes.join(" ") };
}

describe("requireScopes", () => {
  it("lets a token with every required scope through", () => {
    const principal = oauthPrincipal(["mcp:read", "mcp:write"]);
    expect(requireScopes(exchangeOf(principal, ["mcp:read"]), context)).toBeUndefined();
  });

  it("refuses a token without them: 403 insufficient_scope naming the scopes, with the caller", () => {
    const principal = oauthPrincipal(["mcp:read"]);
    let refusal: unknown;
    try {
      requireScopes(exchangeOf(principal, ["mcp:read", "mcp:admin", "mcp:write"]), context);
    } catch (error) {
      refusal = error;
    }
    expect(refusal).toMatchObject({
      result: "insufficient_scope",
      status: 403,
      oauthError: "insufficient_scope",
      requiredScopes: ["mcp:read", "mcp:admin", "mcp:write"],
      message: "the token lacks the scope mcp:admin mcp:write",
      principal,
    });
  });

  it("does not hold API keys or anonymous callers to required_scopes", () => {
    const key: Principal = { type: "api_key", keyId: "ci", scopes: [], scope: "" };
    expect(requireScopes(exchangeOf(key, ["mcp:read"]), context)).toBeUndefined();
    const anonymous: Principal = { type: "none", scopes: [], scope: "" };
    expect(requireScopes(exchangeOf(anonymous, ["mcp:read"]), context)).toBeUndefined();
  });
});
