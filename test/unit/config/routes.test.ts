/** The routes section: what a config may say, and the routes it compiles to. */
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/config/load.js";
import { ConfigError } from "../../../src/errors.js";
import { RouteTable, routeSpecs, suffixedMetadataPath } from "../../../src/runtime/routes.js";

const FILE = "/etc/mcpgw/mcpgw.yaml";
const AUDIT = "audit:\n  path: audit.jsonl\nauth:\n  enabled: false\n";

function problems(text: string): readonly string[] {
  try {
    parseConfig(text, FILE, {});
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error("expected the config to be refused");
}

describe("routes in the config", () => {
  it("needs something to serve", () => {
    expect(problems(AUDIT)).toEqual([
      `${FILE}:1:1 upstream: nothing to serve: set upstream (one MCP server) or routes (several)`,
    ]);
  });

  it("refuses two routes at one path, the gateway's own paths, and keys bound to no route", () => {
    const text = `${AUDIT.replace("auth:\n  enabled: false\n", "")}upstream: {url: "http://127.0.0.1:1/mcp"}
routes:
  - {path: /mcp, upstream: {url: "http://127.0.0.1:2/mcp"}}
  - {path: /healthz, upstream: {url: "http://127.0.0.1:3/mcp"}}
auth:
  keys:
    - id: a
      hash: "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
      routes: [/nowhere/mcp]
`;
    const found = problems(text);
    expect(found).toEqual([
      expect.stringMatching(/routes\[0\]\.path: \/mcp is already the top-level upstream's route$/),
      expect.stringMatching(/routes\[1\]\.path: \/healthz is served by the gateway itself/),
      expect.stringMatching(/auth\.keys\[0\]\.routes\[0\]: no route has the path \/nowhere\/mcp$/),
    ]);
  });

  it("takes exactly one upstream kind, and each kind's keys only with it", () => {
    const route = (upstream: string) =>
      problems(`${AUDIT}routes:\n  - path: /a/mcp\n    upstream: ${upstream}\n`);
    expect(route(`{url: "http://127.0.0.1:1/mcp", command: [x]}`)).toEqual([
      expect.stringMatching(/routes\[0\]\.upstream: set only one of url, command$/),
    ]);
    expect(route(`{url: "http://127.0.0.1:1/mcp", env: {A: b}}`)).toEqual([
      expect.stringMatching(
        /routes\[0\]\.upstream\.env: only applies to a stdio \(command\) upstream$/,
      ),
    ]);
    expect(route(`{command: [x], idle_timeout: soon}`)).toEqual([
      expect.stringMatching(/routes\[0\]\.upstream\.idle_timeout: invalid duration "soon"/),
    ]);
  });

  it("refuses a sessions.key that is not 32 bytes of base64", () => {
    const [problem] = problems(
      `${AUDIT}upstream: {url: "http://127.0.0.1:1/mcp"}\nsessions: {key: c2hvcnQ=}\n`,
    );
    expect(problem).toMatch(/sessions\.key: .*32/);
  });
});

describe("routeSpecs and the route table", () => {
  const config = parseConfig(
    `${AUDIT.replace("auth:\n  enabled: false\n", "")}upstream: {url: "http://127.0.0.1:1/mcp"}
routes:
  - {path: /agents/a/mcp, upstream: {url: "http://127.0.0.1:2/mcp"}, oauth: {audience: aud-a}}
  - {path: /agents/b/mcp, upstream: {command: [node]}, oauth: {public_url: "https://b.example/mcp"}}
auth:
  oauth:
    enabled: true
    issuer: https://idp.example/
    audience: aud-main
    jwks_url: https://idp.example/jwks
    required_scopes: [mcp:read]
    public_url: https://gw.example/v1/mcp
`,
    FILE,
    {},
  );

  it("puts the top-level upstream first, at public_url's path, and derives each route's resource", () => {
    expect(
      routeSpecs(config).map(({ path, primary, publicUrl, audience, requiredScopes }) => ({
        path,
        primary,
        publicUrl,
        audience,
        requiredScopes,
      })),
    ).toEqual([
      {
        path: "/v1/mcp",
        primary: true,
        publicUrl: "https://gw.example/v1/mcp",
        audience: "aud-main",
        requiredScopes: ["mcp:read"],
      },
      {
        path: "/agents/a/mcp",
        primary: false,
        publicUrl: "https://gw.example/agents/a/mcp",
        audience: "aud-a",
        requiredScopes: ["mcp:read"],
      },
      {
        path: "/agents/b/mcp",
        primary: false,
        publicUrl: "https://b.example/mcp",
        audience: "aud-main",
        requiredScopes: ["mcp:read"],
      },
    ]);
  });

  it("finds routes and metadata documents by exact path", () => {
    const routes = routeSpecs(config).map((spec) => ({ path: spec.path }));
    const table = new RouteTable(routes as never, "/.well-known/oauth-protected-resource");
    expect(table.mcp("/agents/a/mcp")).toBe(routes[1]);
    expect(table.mcp("/agents/a/mcp/")).toBeUndefined();
    expect(table.mcp("/agents/A/mcp")).toBeUndefined();
    expect(table.metadata(suffixedMetadataPath("/agents/b/mcp"))).toBe(routes[2]);
    expect(table.metadata("/.well-known/oauth-protected-resource")).toBe(routes[0]);
    expect(suffixedMetadataPath("/")).toBe("/.well-known/oauth-protected-resource");
  });
});
