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
