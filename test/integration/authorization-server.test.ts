import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { ClientCredentialsProvider } from "@modelcontextprotocol/sdk/client/auth-extensions.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { FetchLike } from "@modelcontextprotocol/sdk/shared/transport.js";
import { createRemoteJWKSet, errors, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  startAuthorizationServer,
  type TestAuthorizationServer,
  type TestClient,
  TokenRequestError,
} from "../helpers/authorization-server.js";

// Nothing listens on these; only the AS needs to know them as resource indicators.
const RESOURCE_A = "http://127.0.0.1:1/mcp";
const RESOURCE_B = "http://127.0.0.1:2/other";

const READER: TestClient = {
  client_id: "reader",
  client_secret: "reader-secret-0123456789",
  scope: "mcp:read",
};
const WRITER: TestClient = {
  client_id: "writer",
  client_secret: "writer-secret-0123456789",
  scope: "mcp:read mcp:write",
};

let authServer: TestAuthorizationServer;
let jwks: ReturnType<typeof createRemoteJWKSet>;

beforeAll(async () => {
  authServer = await startAuthorizationServer({
    clients: [READER, WRITER],
    resources: [
      { indicator: RESOURCE_A, scope: "mcp:read mcp:write" },
      { indicator: RESOURCE_B, scope: "mcp:read" },
    ],
  });
  jwks = createRemoteJWKSet(new URL(authServer.jwksUri));
});

afterAll(() => authServer.close());

describe("oidc-provider as the external authorization server", () => {
  it("serves discovery at both well-known paths, with the issuer the tokens carry", async () => {
    expect(authServer.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    for (const path of ["openid-configuration", "oauth-authorization-server"]) {
      const res = await fetch(`${authServer.issuer}/.well-known/${path}`);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({
        issuer: authServer.issuer,
        jwks_uri: authServer.jwksUri,
        token_endpoint: authServer.tokenEndpoint,
        grant_types_supported: expect.arrayContaining(["client_credentials"]),
      });
    }
  });

  it("issues an ES256 at+jwt for resource A that verifies with A's audience", async () => {
    const token = await authServer.clientCredentialsToken({
      client: WRITER,
      resource: RESOURCE_A,
      scope: "mcp:read mcp:write",
    });
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      issuer: authServer.issuer,
      audience: RESOURCE_A,
      typ: "at+jwt",
      algorithms: ["ES256"],
    });
    expect(protectedHeader).toEqual({ alg: "ES256", typ: "at+jwt", kid: expect.any(String) });
    expect(payload).toEqual({
      iss: authServer.issuer,
      aud: RESOURCE_A,
      sub: WRITER.client_id,
      client_id: WRITER.client_id,
      scope: "mcp:read mcp:write",
      iat: expect.any(Number),
      exp: expect.any(Number),
      jti: expect.any(String),
    });
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(600);
  });

  it("grants only the scopes both the client and the resource allow, without an error", async () => {
    const forReader = await authServer.clientCredentialsToken({
      client: READER,
      resource: RESOURCE_A,
      scope: "mcp:read mcp:write",
    });
    const onB = await authServer.clientCredentialsToken({ client: WRITER, resource: RESOURCE_B });
    const reader = await jwtVerify(forReader, jwks, {
      issuer: authServer.issuer,
      audience: RESOURCE_A,
    });
    const writerOnB = await jwtVerify(onB, jwks, {
      issuer: authServer.issuer,
      audience: RESOURCE_B,
    });
    expect(reader.payload.scope).toBe("mcp:read");
    expect(writerOnB.payload.scope).toBe("mcp:read");
  });

  it("omits the scope claim when no scope was requested", async () => {
    const token = await authServer.clientCredentialsToken({
      client: WRITER,
      resource: RESOURCE_A,
      scope: "",
    });
    const { payload } = await jwtVerify(token, jwks, {
      issuer: authServer.issuer,
      audience: RESOURCE_A,
    });
    expect(payload).not.toHaveProperty("scope");
  });

  it("issues tokens for resource A that fail verification as resource B's", async () => {
    const token = await authServer.clientCredentialsToken({ client: WRITER, resource: RESOURCE_A });
    const verifying = jwtVerify(token, jwks, { issuer: authServer.issuer, audience: RESOURCE_B });
    await expect(verifying).rejects.toBeInstanceOf(errors.JWTClaimValidationFailed);
    await expect(verifying).rejects.toMatchObject({ claim: "aud" });
  });

  it("refuses an unknown resource indicator with invalid_target", async () => {
    const requesting = authServer.clientCredentialsToken({
      client: WRITER,
      resource: "http://127.0.0.1:3/unknown",
    });
    await expect(requesting).rejects.toBeInstanceOf(TokenRequestError);
    await expect(requesting).rejects.toMatchObject({ status: 400, error: "invalid_target" });
  });

  it("refuses a wrong client secret with invalid_client", async () => {
    const requesting = authServer.clientCredentialsToken({
      client: { ...WRITER, client_secret: "not-the-secret" },
      resource: RESOURCE_A,
    });
    await expect(requesting).rejects.toMatchObject({ status: 401, error: "invalid_client" });
  });
});

describe("the SDK's ClientCredentialsProvider against this authorization server", () => {
  it("connects after 401 → resource metadata → AS metadata → token → retry", async () => {
    const rs = await startStandInResourceServer({ requiredScope: "mcp:read" });
    const { fetch: recording, seen } = recordingFetch();
    const client = new Client({ name: "mcpgw-test", version: "0" });
    try {
      await client.connect(
        new StreamableHTTPClientTransport(new URL(rs.url), {
          // Deliberately narrower than the metadata's scopes_supported, to show which one is sent.
          authProvider: clientCredentials(WRITER, "mcp:read"),
          fetch: recording,
        }),
      );
      expect(client.getServerVersion()).toEqual({ name: "stand-in", version: "0" });
      // After these, a GET for the server-to-client stream races connect() to completion.
      expect(seen.slice(0, 6)).toEqual([
        { method: "POST", url: rs.url, auth: "none" },
        { method: "GET", url: rs.metadataUrl, auth: "none" },
        {
          method: "GET",
          url: `${authServer.issuer}/.well-known/oauth-authorization-server`,
          auth: "none",
        },
        {
          method: "POST",
          url: authServer.tokenEndpoint,
          auth: "Basic",
          form: { grant_type: "client_credentials", scope: "mcp:read", resource: rs.url },
        },
        { method: "POST", url: rs.url, auth: "Bearer" }, // initialize, retried
        { method: "POST", url: rs.url, auth: "Bearer" }, // notifications/initialized
      ]);
    } finally {
      await client.close();
      await rs.close();
    }
  });

  it("answers 403 insufficient_scope by re-requesting its configured scope, then gives up", async () => {
    const rs = await startStandInResourceServer({ requiredScope: "mcp:write" });
    const { fetch: recording, seen } = recordingFetch();
    const client = new Client({ name: "mcpgw-test", version: "0" });
    try {
      const connecting = client.connect(
        new StreamableHTTPClientTransport(new URL(rs.url), {
          authProvider: clientCredentials(WRITER, "mcp:read"),
          fetch: recording,
        }),
      );
      await expect(connecting).rejects.toBeInstanceOf(StreamableHTTPError);
      await expect(connecting).rejects.toMatchObject({
        code: 403,
        message: expect.stringContaining("after trying upscoping"),
      });
      // The challenge asked for mcp:write, which WRITER may have; the SDK asked for mcp:read again.
      const tokenRequests = seen
        .filter((r) => r.url === authServer.tokenEndpoint)
        .map((r) => r.form);
      expect(tokenRequests).toEqual([
        { grant_type: "client_credentials", scope: "mcp:read", resource: rs.url },
        { grant_type: "client_credentials", scope: "mcp:read", resource: rs.url },
      ]);
      expect(seen.filter((r) => r.url === rs.url).map((r) => r.auth)).toEqual([
        "none",
        "Bearer",
        "Bearer",
      ]);
    } finally {
      await client.close();
      await rs.close();
    }
  });
});

function clientCredentials(client: TestClient, scope: string): ClientCredentialsProvider {
  return new ClientCredentialsProvider({
    clientId: client.client_id,
    clientSecret: client.client_secret,
    scope,
    expectedIssuer: authServer.issuer,
  });
}

interface SeenRequest {
  method: string;
  url: string;
  auth: string;
  form?: Record<string, string>;
}

/** A fetch for the transport (which uses it for discovery and token requests too) that logs. */
function recordingFetch(): { fetch: FetchLike; seen: SeenRequest[] } {
  const seen: SeenRequest[] = [];
  const fetchLike: FetchLike = (url, init) => {
    const authorization = new Headers(init?.headers).get("authorization");
    const request: SeenRequest = {
      method: init?.method ?? "GET",
      url: String(url),
      auth: authorization?.split(" ")[0] ?? "none",
    };
    if (init?.body instanceof URLSearchParams) request.form = Object.fromEntries(init.body);
    seen.push(request);
    return fetch(url, init);
  };
  return { fetch: fetchLike, seen };
}

/**
 * STAND-IN for the gateway, only so the SDK's side of the OAuth loop can be watched against the
 * real authorization server above; the gateway's own tests put the gateway here. It serves RFC
 * 9728 metadata, challenges without a valid bearer (403 insufficient_scope without
 * `requiredScope`), and answers MCP initialize with a bare JSON result.
 */
async function startStandInResourceServer({ requiredScope }: { requiredScope: string }) {
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      res.writeHead(500).end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const url = `${origin}/mcp`;
  const metadataUrl = `${origin}/.well-known/oauth-protected-resource/mcp`;
  authServer.addResource({ indicator: url, scope: "mcp:read mcp:write" });

  async function handle(req: IncomingMessage, res: ServerResponse) {
    if (req.url === "/.well-known/oauth-protected-resource/mcp") {
      sendJson(res, 200, {
        resource: url,
        authorization_servers: [authServer.issuer],
        scopes_supported: ["mcp:read", "mcp:write"],
        bearer_methods_supported: ["header"],
      });
      return;
    }
    const challenge = `Bearer realm="mcpgw", resource_metadata="${metadataUrl}"`;
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    const verified = bearer
      ? await jwtVerify(bearer, jwks, {
          issuer: authServer.issuer,
          audience: url,
          typ: "at+jwt",
        }).catch(() => undefined)
      : undefined;
    if (!verified) {
      res.writeHead(401, { "www-authenticate": challenge }).end();
      return;
    }
    const granted = String(verified.payload.scope ?? "").split(" ");
    if (!granted.includes(requiredScope)) {
      res
        .writeHead(403, {
          "www-authenticate": `${challenge}, error="insufficient_scope", scope="${requiredScope}"`,
        })
        .end();
      return;
    }
    if (req.method !== "POST") {
      res.writeHead(405, { allow: "POST" }).end();
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const message = JSON.parse(Buffer.concat(chunks).toString()) as {
      id?: number | string;
      params?: { protocolVersion?: string };
    };
    if (message.id === undefined) {
      res.writeHead(202).end();
      return;
    }
    sendJson(res, 200, {
      jsonrpc: "2.0",
      id: message.id,
      result: {
        protocolVersion: message.params?.protocolVersion,
        capabilities: {},
        serverInfo: { name: "stand-in", version: "0" },
      },
    });
  }

  return {
    url,
    metadataUrl,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}
