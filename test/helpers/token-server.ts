/**
 * An upstream MCP server's own authorization server, for the gateway's upstream credentials:
 * oidc-provider with the client credentials grant and RFC 8707 resource indicators, issuing
 * ES256 JWT access tokens for one resource. It counts token requests and can be told to fail
 * the next ones (503) or to answer slowly, to test retries and timeouts.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createRemoteJWKSet, exportJWK, generateKeyPair, jwtVerify } from "jose";
import { importOidcProvider } from "../../src/authorization-server/oidc-provider-module.js";

export interface TokenServer {
  issuer: string;
  tokenUrl: string;
  /** Token requests received (answered or not). */
  readonly tokenRequests: number;
  /** Answer the next `count` token requests 503. */
  failNext(count: number): void;
  /** Hold every token request this long before answering (0: not at all). */
  delayMs: number;
  /** Whether `token` is an access token this server issued for `resource` (a real check). */
  verify(token: string): Promise<boolean>;
  close(): Promise<void>;
}

export async function startTokenServer(options: {
  clientId: string;
  clientSecret: string;
  resource: string;
  /** Access token lifetime, seconds. */
  ttl: number;
  scope?: string;
}): Promise<TokenServer> {
  const { default: OidcProvider } = await importOidcProvider<{
    default: new (
      issuer: string,
      configuration: object,
    ) => { callback(): (req: IncomingMessage, res: ServerResponse) => void };
  }>();
  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const provider = new OidcProvider(issuer, {
    jwks: {
      keys: [{ ...(await exportJWK(privateKey)), kid: "upstream-as-1", alg: "ES256", use: "sig" }],
    },
    clients: [
      {
        client_id: options.clientId,
        client_secret: options.clientSecret,
        grant_types: ["client_credentials"],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: "client_secret_basic",
        // Its only key is ES256 (the default, RS256, has none to sign with).
        id_token_signed_response_alg: "ES256",
      },
    ],
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => options.resource,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: options.scope ?? "upstream:read",
          audience: options.resource,
          accessTokenTTL: options.ttl,
          accessTokenFormat: "jwt",
          jwt: { sign: { alg: "ES256" } },
        }),
      },
    },
    routes: { token: "/token", jwks: "/jwks" },
  });
  const handler = provider.callback();
  const jwks = createRemoteJWKSet(new URL(`${issuer}/jwks`));
  let tokenRequests = 0;
  let failures = 0;
  const state = {
    delayMs: 0,
  };
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    if (req.url?.startsWith("/token")) {
      tokenRequests++;
      if (failures > 0) {
        failures--;
        res.writeHead(503, { "content-type": "application/json" });
        res.end('{"error":"temporarily_unavailable"}');
        return;
      }
      if (state.delayMs > 0) {
        setTimeout(() => handler(req, res), state.delayMs);
        return;
      }
    }
    handler(req, res);
  });
  return {
    issuer,
    tokenUrl: `${issuer}/token`,
    get tokenRequests() {
      return tokenRequests;
    },
    failNext(count) {
      failures = count;
    },
    get delayMs() {
      return state.delayMs;
    },
    set delayMs(value: number) {
      state.delayMs = value;
    },
    async verify(token) {
      try {
        await jwtVerify(token, jwks, { issuer, audience: options.resource });
        return true;
      } catch {
        return false;
      }
    },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
