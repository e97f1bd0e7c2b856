/**
 * The gateway behind a real authorization server nobody here wrote (oidc-provider), issuing JWT
 * access tokens for the gateway's resource (RFC 8707 resource indicators, client_credentials),
 * and the official MCP SDK client discovering it all from a 401.
 */
import { ClientCredentialsProvider } from "@modelcontextprotocol/sdk/client/auth-extensions.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { OAuthClientMetadata } from "@modelcontextprotocol/sdk/shared/auth.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import {
  startAuthorizationServer,
  type TestAuthorizationServer,
  type TestClient,
} from "../helpers/authorization-server.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { INITIALIZE, POST_HEADERS } from "../helpers/mcp-client.js";

const AUDIENCE = "urn:mcpgw:integration";
const AGENT: TestClient = {
  client_id: "agent",
  client_secret: "agent-secret",
  scope: "mcp:read mcp:write",
};
const OTHER_RESOURCE = "http://127.0.0.1:9/other-api";

let upstream: ExampleServer;
let as: TestAuthorizationServer;

beforeAll(async () => {
  upstream = await startExampleServer();
  as = await startAuthorizationServer({
    clients: [AGENT],
    resources: [{ indicator: OTHER_RESOURCE, scope: "mcp:read", audience: "other-api" }],
  });
});

afterAll(async () => {
  await upstream.close();
  await as.close();
});

/** A gateway trusting the AS, registered at the AS as a resource server under its own URL. */
async function gatewayFor(requiredScopes: string[]): Promise<TestGateway> {
  const gw = await startGateway({
    upstream: { url: upstream.url },
    auth: {
      oauth: {
        enabled: true,
        issuer: as.issuer,
        audience: AUDIENCE,
        jwks_url: as.jwksUri,
        required_scopes: requiredScopes,
      },
    },
  });
  as.addResource({ indicator: gw.url, scope: "mcp:read mcp:write", audience: AUDIENCE });
  return gw;
}

describe("tokens from an external authorization server", () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await gatewayFor(["mcp:read"]);
  });
  afterAll(async () => {
    await gw.stop();
  });

  const initialize = async (token: string) => {
    const res = await fetch(gw.url, {
      method: "POST",
      headers: { ...POST_HEADERS, authorization: `Bearer ${token}` },
      body: INITIALIZE,
    });
    await res.text();
    return res.status;
  };

  it("accepts a client_credentials token issued for the gateway's resource", async () => {
    const token = await as.clientCredentialsToken({ client: AGENT, resource: gw.url });
    expect(await initialize(token)).toBe(200);
    expect((await gw.auditRecords(1)).at(-1)).toMatchObject({
      auth_type: "oauth",
      auth_result: "ok",
      oauth_client_id: "agent",
      scopes: "mcp:read mcp:write",
    });
  });

  it("refuses a token the same AS issued for another resource", async () => {
    const token = await as.clientCredentialsToken({ client: AGENT, resource: OTHER_RESOURCE });
    expect(await initialize(token)).toBe(401);
    expect((await gw.auditRecords(1)).at(-1)).toMatchObject({ auth_result: "bad_audience" });
  });

  it("lets the SDK client go 401 → metadata → token → retry, and use the tools", async () => {
    const seen: string[] = [];
    const transport = new StreamableHTTPClientTransport(new URL(gw.url), {
      authProvider: new ClientCredentialsProvider({
        clientId: AGENT.client_id,
        clientSecret: AGENT.client_secret,
        scope: "mcp:read",
        expectedIssuer: as.issuer,
      }),
      fetch: async (url, init) => {
        const response = await fetch(url, init);
        seen.push(`${init?.method ?? "GET"} ${new URL(String(url)).pathname} ${response.status}`);
        return response;
      },
    });
    const client = new Client({ name: "mcpgw-test", version: "0" });
    await client.connect(transport);
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name)).toContain("echo");
    expect(seen.slice(0, 5)).toEqual([
      "POST /mcp 401",
      "GET /.well-known/oauth-protected-resource 200",
      "GET /.well-known/oauth-authorization-server 200",
      "POST /token 200",
      "POST /mcp 200",
    ]);
    await client.close();
  });
});

/**
 * A client_credentials provider that asks for the scope the resource server's last 403
 * challenge named: the token source under the test's control that a step-up needs, since the
 * SDK's own ClientCredentialsProvider always requests its configured scope.
 */
class StepUpProvider extends ClientCredentialsProvider {
  scope = "mcp:read";

  override get clientMetadata(): OAuthClientMetadata {
    return { ...super.clientMetadata, scope: this.scope };
  }
}

describe("403 step-up", () => {
  it("gets a token with the scope the insufficient_scope challenge names, and retries", async () => {
    const gw = await gatewayFor(["mcp:read", "mcp:write"]);
    const provider = new StepUpProvider({
      clientId: AGENT.client_id,
      clientSecret: AGENT.client_secret,
      expectedIssuer: as.issuer,
    });
    const statuses: number[] = [];
    const transport = new StreamableHTTPClientTransport(new URL(gw.url), {
      authProvider: provider,
      fetch: async (url, init) => {
        const response = await fetch(url, init);
        if (new URL(String(url)).pathname === "/mcp") statuses.push(response.status);
        const challenge = response.headers.get("www-authenticate") ?? "";
        const scope = /error="insufficient_scope".*scope="([^"]+)"/.exec(challenge)?.[1];
        if (response.status === 403 && scope) provider.scope = scope;
        return response;
      },
    });
    const client = new Client({ name: "mcpgw-test", version: "0" });
    await client.connect(transport);
    expect(statuses.slice(0, 3)).toEqual([401, 403, 200]);
    const denied = (await gw.auditRecords(2)).find((record) => record.status === 403);
    expect(denied).toMatchObject({ auth_result: "insufficient_scope", scopes: "mcp:read" });
    await client.close();
    await gw.stop();
  });
});
