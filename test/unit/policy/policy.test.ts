import { describe, expect, it } from "vitest";
import type { Principal } from "../../../src/auth/principal.js";
import { glob, Policy, type PolicyConfig } from "../../../src/policy/policy.js";

const key = (keyId: string, scopes: string[] = []): Principal => ({
  type: "api_key",
  keyId,
  scopes,
  scope: scopes.join(" "),
});

const policy = (rules: PolicyConfig["rules"], fallback: "allow" | "deny" = "allow") =>
  new Policy({ default: fallback, rules });

describe("Policy", () => {
  it("decides by the first rule that matches, else the default", () => {
    const p = policy(
      [
        {
          id: "ci-read-only",
          match: { key_id: "ci-*", method: "tools/call", tool: "write_*" },
          effect: "deny",
        },
        { id: "admins", match: { scope: "mcp:admin" }, effect: "allow" },
        { id: "rest", match: { route: "/agents/*" }, effect: "deny" },
      ],
      "allow",
    );
    const call = (principal: Principal, tool: string, route = "/mcp") =>
      p.decide({ route, method: "tools/call", tool, principal }).rule;
    expect(call(key("ci-build"), "write_file")).toBe("ci-read-only");
    expect(call(key("ci-build"), "read_file")).toBe("default");
    expect(call(key("ops", ["mcp:admin"]), "write_file", "/agents/x/mcp")).toBe("admins");
    expect(call(key("ops", ["*"]), "write_file", "/agents/x/mcp")).toBe("admins");
    expect(call(key("ops"), "read_file", "/agents/github/mcp")).toBe("rest");
  });

  it("remembers a caller's decisions without mixing up subjects or callers", () => {
    const p = policy([
      { id: "no-delete", match: { method: "tools/call", tool: "delete_*" }, effect: "deny" },
      { id: "ops-only", match: { prompt: "deploy", key_id: "ci" }, effect: "deny" },
    ]);
    const ci = key("ci");
    const ops = key("ops");
    for (let round = 0; round < 2; round++) {
      expect(
        p.decide({ route: "/mcp", method: "tools/call", tool: "delete_x", principal: ci }).rule,
      ).toBe("no-delete");
      expect(
        p.decide({ route: "/mcp", method: "tools/call", tool: "read_x", principal: ci }).rule,
      ).toBe("default");
      // A method that spells out another subject's memo key is its own subject.
      expect(p.decide({ route: "/mcp", method: "tools/calltdelete_x", principal: ci }).rule).toBe(
        "default",
      );
      expect(
        p.decide({ route: "/mcp", method: "prompts/get", prompt: "deploy", principal: ci }).rule,
      ).toBe("ops-only");
      expect(
        p.decide({ route: "/mcp", method: "prompts/get", prompt: "deploy", principal: ops }).rule,
      ).toBe("default");
      // Two names at once (no request has them) are decided without the memo.
      expect(
        p.decide({
          route: "/mcp",
          method: "tools/call",
          tool: "delete_x",
          prompt: "deploy",
          principal: ci,
        }).rule,
      ).toBe("no-delete");
    }
  });

  it("matches tool rules only on requests that have a tool", () => {
    const p = policy([{ id: "no-tools", match: { tool: "*" }, effect: "deny" }]);
    expect(p.decide({ route: "/mcp", method: "tools/list", principal: key("a") }).rule).toBe(
      "default",
    );
    expect(
      p.decide({ route: "/mcp", method: "tools/call", tool: "x", principal: key("a") }).rule,
    ).toBe("no-tools");
  });

  it("matches prefix, suffix and plain patterns as the globs they are", () => {
    const p = policy([
      { id: "prefix", match: { tool: "delete_*" }, effect: "deny" },
      { id: "suffix", match: { tool: "*_admin" }, effect: "deny" },
      { id: "plain", match: { tool: "reset" }, effect: "deny" },
      { id: "inner", match: { tool: "a*b*c" }, effect: "deny" },
    ]);
    const rule = (tool: string) =>
      p.decide({ route: "/mcp", method: "tools/call", tool, principal: key("k") }).rule;
    expect(
      ["delete_x", "delete_", "x_admin", "reset", "aXbYc", "resets", "undelete_x"].map(rule),
    ).toEqual(["prefix", "prefix", "suffix", "plain", "inner", "default", "default"]);
  });

  it("globs: * spans slashes, ? one character, the rest literal", () => {
    expect(glob("/agents/*").test("/agents/a/b/mcp")).toBe(true);
    expect(glob("file?.txt").test("file1.txt")).toBe(true);
    expect(glob("a.b").test("axb")).toBe(false);
    expect(glob("(x)+").test("(x)+")).toBe(true);
  });

  it("finds the rules an earlier rule shadows", () => {
    const p = policy([
      { id: "deny-deletes", match: { method: "tools/call", tool: "delete_*" }, effect: "deny" },
      {
        id: "delete-repo-admins",
        match: { method: "tools/call", tool: "delete_repo" },
        require_scopes: ["mcp:admin"],
      },
      { id: "ci", match: { key_id: "ci", tool: "delete_repo" }, effect: "allow" },
      { id: "everything", match: { route: "*" }, effect: "allow" },
      { id: "after-everything", match: { method: "tools/list" }, effect: "deny" },
    ]);
    expect(p.unreachable()).toEqual([
      { rule: "delete-repo-admins", shadowedBy: "deny-deletes" },
      { rule: "after-everything", shadowedBy: "everything" },
    ]);
  });
});

describe("Policy.mayRefuse", () => {
  it("says whether any call of a method could be refused, so lists need filtering", () => {
    const onlyResources = policy([
      {
        id: "no-secrets",
        match: { method: "resources/read", resource: "secret://*" },
        effect: "deny",
      },
      { id: "ok", match: { method: "tools/call" }, effect: "allow" },
    ]);
    expect(onlyResources.mayRefuse("tools/call")).toBe(false);
    expect(onlyResources.mayRefuse("resources/read")).toBe(true);
    expect(
      policy([{ id: "any", match: { tool: "x" }, require_scopes: ["a"] }]).mayRefuse("tools/call"),
    ).toBe(true);
    expect(policy([], "deny").mayRefuse("tools/call")).toBe(true);
  });
});

describe("Policy.refusalHints", () => {
  it("names text a list must contain for any item of it to be refused, or nothing when it cannot", () => {
    const p = policy([
      { id: "ok", match: { tool: "anything" }, effect: "allow" },
      { id: "deletes", match: { method: "tools/call", tool: "delete_*" }, effect: "deny" },
      { id: "admin", match: { tool: "*_admin_*" }, require_scopes: ["mcp:admin"] },
      { id: "files", match: { resource: "file:///etc/*" }, effect: "deny" },
      { id: "other-method", match: { method: "prompts/get", tool: "x*" }, effect: "deny" },
    ]);
    expect(p.refusalHints("tools/call", "tool")).toEqual(["delete_", "_admin_"]);
    // Only the run JSON must write as it is: no '/' (which may be written \/).
    expect(p.refusalHints("resources/read", "resource")).toEqual(["file:"]);
    expect(p.refusalHints("prompts/get", "prompt")).toEqual([]);
    const pattern = p.refusalPattern("tools/call", "tool");
    expect(pattern?.test('{"tools":[{"name":"read"},{"name":"x_admin_y"}]}')).toBe(true);
    expect(pattern?.test('{"tools":[{"name":"\\u0064elete_x"}]}')).toBe(true);
    expect(pattern?.test('{"tools":[{"name":"read"},{"name":"delete"}]}')).toBe(false);
    const byCaller = policy([
      { id: "ci", match: { key_id: "ci", method: "tools/*" }, effect: "deny" },
    ]);
    expect(byCaller.refusalHints("tools/call", "tool")).toBeUndefined();
    const wild = policy([{ id: "all", match: { tool: "*" }, effect: "deny" }]);
    expect(wild.refusalHints("tools/call", "tool")).toBeUndefined();
    expect(policy([], "deny").refusalHints("tools/call", "tool")).toBeUndefined();
  });
});
