/**
 * Routes: one gateway in front of several MCP servers, each route its own protected resource,
 * API keys bound to routes, unknown paths audited, routes added and removed by a reload.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import {
  type JwksServer,
  makeKey,
  type SigningKey,
  signToken,
  startJwksServer,
} from "../helpers/jwks-server.js";
import { cheapHash } from "../helpers/keys.js";
import {
  connectClient,
  INITIALIZE,
  initializeStatus,
  POST_HEADERS,
} from "../helpers/mcp-client.js";

const ANY_KEY = "routes-suite-unbound-key-0123456789";
const GITHUB_KEY = "routes-suite-github-key-0123456789";
const GITHUB = "/agents/github/mcp";

/** An example MCP server that counts the requests it received. */
async function countingServer(): Promise<ExampleServer & { requests: () => number }> {
  let requests = 0;
  const server = await startExampleServer({ onRequest: () => requests++ });
  return { ...server, requests: () => requests };
}

let main: Awaited<ReturnType<typeof countingServer>>;
let github: Awaited<ReturnType<typeof countingServer>>;
let anyHash: string;
let githubHash: string;

beforeAll(async () => {
  [main, github, anyHash, githubHash] = await Promise.all([
    countingServer(),
    countingServer(),
    cheapHash(ANY_KEY),
    cheapHash(GITHUB_KEY),
  ]);
});

afterAll(async () => {
  await Promise.all([main.close(), github.close()]);
});

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

describe("routes with API keys", () => {
  let gw: TestGateway;
  let origin: string;

  const config = (extraRoutes: object[] = []) => ({
    upstream: { url: main.url },
    routes: [{ path: GITHUB, upstream: { url: github.url } }, ...extraRoutes],
    auth: {
      keys: [
        { id: "any", hash: anyHash },
        { id: "github-agent", hash: githubHash, routes: [GITHUB] },
      ],
    },
  });

  beforeAll(async () => {
    gw = await startGateway(config());
    origin = new URL(gw.url).origin;
  });

  afterAll(async () => {
    await gw.stop();
  });

  it("sends each route to its own upstream, and audits the route", async () => {
    const before = { main: main.requests(), github: github.requests() };
    const client = await connectClient(`${origin}${GITHUB}`, bearer(ANY_KEY));
    const { tools } = await client.client.listTools();
    expect(tools.map((tool) => tool.name)).toContain("echo");
    await client.close();
    expect(github.requests()).toBeGreaterThan(before.github);
    expect(main.requests()).toBe(before.main);

    expect(await initializeStatus(`${origin}/mcp`, ANY_KEY)).toBe(200);
    expect(main.requests()).toBe(before.main + 1);
    const records = await gw.auditRecords(1);
    expect(records.at(-1)).toMatchObject({ route: "/mcp", method: "initialize", status: 200 });
    expect(records.some((line) => line.route === GITHUB && line.method === "tools/list")).toBe(
      true,
    );
  });

  it("holds a route-bound key to its routes: 401 invalid_token elsewhere, nothing forwarded", async () => {
    const before = main.requests();
    expect(await initializeStatus(`${origin}${GITHUB}`, GITHUB_KEY)).toBe(200);
    const res = await fetch(`${origin}/mcp`, {
      method: "POST",
      headers: { ...POST_HEADERS, ...bearer(GITHUB_KEY) },
      body: INITIALIZE,
    });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toContain('error="invalid_token"');
    expect(await res.json()).toMatchObject({ error: "invalid_token" });
    expect(main.requests()).toBe(before);
    const record = (await gw.auditRecords(1)).at(-1);
    expect(record).toMatchObject({
      route: "/mcp",
      key_id: "github-agent",
      auth_type: "api_key",
      auth_result: "wrong_route",
      action: "deny",
      status: 401,
    });
  });

  it("answers a path no route has with 404, audited without a route", async () => {
    const res = await fetch(`${origin}/agents/unknown/mcp`, { method: "POST", body: "{}" });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: "not_found" });
    const record = (await gw.auditRecords(1)).at(-1);
    expect(record).toMatchObject({ status: 404, error: "not_found", method: "POST" });
    expect(record).not.toHaveProperty("route");
  });

  it("counts requests per route in the metrics", async () => {
    const text = await (await fetch(`${origin}/metrics`)).text();
    expect(text).toMatch(new RegExp(`mcpgw_requests_total\\{[^}]*route="${GITHUB}"`));
    expect(text).toMatch(/mcpgw_requests_total\{[^}]*route="unmatched"[^}]*status="404"/);
  });

  it("adds and removes routes on reload while traffic flows on the others", async () => {
    const extra = "/agents/extra/mcp";
    let stop = false;
    const statuses: number[] = [];
    const traffic = (async () => {
      while (!stop) statuses.push(await initializeStatus(`${origin}/mcp`, ANY_KEY));
    })();
    expect(await initializeStatus(`${origin}${extra}`, ANY_KEY)).toBe(404);
    await gw.writeConfig(config([{ path: extra, upstream: { url: github.url } }]));
    await gw.gateway.reload("SIGHUP");
    expect(await initializeStatus(`${origin}${extra}`, ANY_KEY)).toBe(200);
    await gw.writeConfig(config());
    await gw.gateway.reload("SIGHUP");
    expect(await initializeStatus(`${origin}${extra}`, ANY_KEY)).toBe(404);
    stop = true;
    await traffic;
    expect(statuses.length).toBeGreaterThan(0);
    expect(statuses.every((status) => status === 200)).toBe(true);
  });
});

describe("routes as OAuth protected resources", () => {
  const AUDIENCE = "mcpgw-main";
  let gw: TestGateway;
  let origin: string;
  let jwks: JwksServer;
  let key: SigningKey;

  beforeAll(async () => {
    key = await makeKey("ES256", "routes-1");
    jwks = await startJwksServer([key]);
    gw = await startGateway({
      upstream: { url: main.url },
      routes: [
        {
          path: GITHUB,
          upstream: { url: github.url },
          oauth: { audience: "mcpgw-github", required_scopes: ["github:use"] },
        },
      ],
      auth: {
        oauth: {
          enabled: true,
          issuer: jwks.issuer,
          audience: AUDIENCE,
          jwks_url: jwks.url,
          required_scopes: ["mcp:read"],
          public_url: "https://gw.example.com/mcp",
        },
      },
    });
    origin = new URL(gw.url).origin;
  });

  afterAll(async () => {
    await gw.stop();
    await jwks.close();
  });

  it("serves each route's RFC 9728 document at its path-suffixed well-known URL", async () => {
    const github = await fetch(`${origin}/.well-known/oauth-protected-resource${GITHUB}`);
    expect(await github.json()).toEqual({
      resource: `https://gw.example.com${GITHUB}`,
      authorization_servers: [jwks.issuer],
      bearer_methods_supported: ["header"],
      scopes_supported: ["github:use"],
    });
    const primary = await fetch(`${origin}/.well-known/oauth-protected-resource`);
    expect(await primary.json()).toMatchObject({
      resource: "https://gw.example.com/mcp",
      scopes_supported: ["mcp:read"],
    });
  });

  it("challenges with the route's own metadata URL and scopes", async () => {
    const res = await fetch(`${origin}${GITHUB}`, {
      method: "POST",
      headers: POST_HEADERS,
      body: INITIALIZE,
    });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe(
      `Bearer realm="mcpgw", resource_metadata="https://gw.example.com/.well-known/oauth-protected-resource${GITHUB}"`,
    );

    const lacking = await signToken(key, jwks.issuer, "mcpgw-github", {
      claims: { scope: "mcp:read" },
    });
    const refused = await fetch(`${origin}${GITHUB}`, {
      method: "POST",
      headers: { ...POST_HEADERS, ...bearer(lacking) },
      body: INITIALIZE,
    });
    expect(refused.status).toBe(403);
    expect(refused.headers.get("www-authenticate")).toContain('scope="github:use"');
  });

  it("verifies each route's audience: a token for one route is refused on the other", async () => {
    const forGithub = await signToken(key, jwks.issuer, "mcpgw-github", {
      claims: { scope: "github:use mcp:read" },
    });
    const forMain = await signToken(key, jwks.issuer, AUDIENCE, { claims: { scope: "mcp:read" } });
    expect(await initializeStatus(`${origin}${GITHUB}`, forGithub)).toBe(200);
    expect(await initializeStatus(`${origin}/mcp`, forMain)).toBe(200);
    expect(await initializeStatus(`${origin}/mcp`, forGithub)).toBe(401);
    expect(await initializeStatus(`${origin}${GITHUB}`, forMain)).toBe(401);
    const record = (await gw.auditRecords(4)).at(-1);
    expect(record).toMatchObject({ route: GITHUB, auth_result: "bad_audience", status: 401 });
  });
});
