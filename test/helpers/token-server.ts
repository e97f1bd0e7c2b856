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
import type { OidcProvider } from "./oidc-identity-provider.js";

const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";

export interface TokenServer {
  issuer: string;
  authorizationUrl: string;
  tokenUrl: string;
  /** Token requests received (answered or not). */
  readonly tokenRequests: number;
  /** Answer the next `count` token requests 503. */
  failNext(count: number): void;
  /** Hold every token request this long before answering (0: not at all). */
  delayMs: number;
  /** Whether `token` is an access token this server issued for `resource` (a real check). */
  verify(token: string): Promise<boolean>;
  /** Its verified claims, or undefined. */
  claims(token: string): Promise<Record<string, unknown> | undefined>;
  /** The subjects it exchanged a token for (token exchange), in order. */
  readonly exchangedFor: readonly string[];
  close(): Promise<void>;
}

export async function startTokenServer(options: {
  clientId: string;
  clientSecret: string;
  resource: string;
  /** Access token lifetime, seconds. */
  ttl: number;
  scope?: string;
  /**
   * Also the authorization code grant (with refresh tokens, rotated) for this redirect URI:
   * `user` signs in and consents at once, as after single sign-on.
   */
  authorizationCode?: { redirectUri: string; user: string };
  /**
   * Also RFC 8693 token exchange: a subject token from this issuer (verified with its JWKS)
   * is exchanged for a token for `resource` whose `sub` is the subject token's.
   */
  tokenExchange?: { issuer: string; jwksUrl: string; audience: string; refuse?: string[] };
}): Promise<TokenServer> {
  const { default: Provider } = await importOidcProvider<{
    default: new (issuer: string, configuration: object) => OidcProvider;
  }>();
  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const provider = new Provider(issuer, {
    jwks: {
      keys: [{ ...(await exportJWK(privateKey)), kid: "upstream-as-1", alg: "ES256", use: "sig" }],
    },
    clients: [
      {
        client_id: options.clientId,
        client_secret: options.clientSecret,
        grant_types: [
          "client_credentials",
          ...(options.authorizationCode ? ["authorization_code", "refresh_token"] : []),
          ...(options.tokenExchange ? [TOKEN_EXCHANGE] : []),
        ],
        redirect_uris: options.authorizationCode ? [options.authorizationCode.redirectUri] : [],
        response_types: options.authorizationCode ? ["code"] : [],
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
    routes: { authorization: "/auth", token: "/token", jwks: "/jwks" },
    findAccount: (_ctx: unknown, id: string) => ({ accountId: id, claims: () => ({ sub: id }) }),
    interactions: {
      url: (_ctx: unknown, interaction: { uid: string }) => `/sso/${interaction.uid}`,
    },
    issueRefreshToken: () => true,
    rotateRefreshToken: () => true,
    pkce: { required: () => true },
  });
  const exchangedFor: string[] = [];
  if (options.tokenExchange) {
    const subject = options.tokenExchange;
    const subjectKeys = createRemoteJWKSet(new URL(subject.jwksUrl));
    const scope = options.scope ?? "upstream:read";
    provider.registerGrantType(
      TOKEN_EXCHANGE,
      async (ctx) => {
        const { subject_token: token, subject_token_type: type } = ctx.oidc.params;
        let sub: string | undefined;
        try {
          if (type !== ACCESS_TOKEN_TYPE) throw new Error("subject_token_type");
          ({
            payload: { sub },
          } = await jwtVerify(String(token), subjectKeys, {
            issuer: subject.issuer,
            audience: subject.audience,
          }));
          // A subject this server will not let the client act for.
          if (subject.refuse?.includes(String(sub))) throw new Error("refused subject");
        } catch {
          ctx.status = 400;
          ctx.body = { error: "invalid_grant", error_description: "subject_token is not valid" };
          return;
        }
        const accountId = String(sub);
        exchangedFor.push(accountId);
        const grant = new provider.Grant({ accountId, clientId: ctx.oidc.client.clientId });
        grant.addResourceScope(options.resource, scope);
        const accessToken = new provider.AccessToken({
          accountId,
          client: ctx.oidc.client,
          grantId: await grant.save(),
          scope,
          gty: "token_exchange",
        });
        accessToken.resourceServer = new provider.ResourceServer(options.resource, {
          scope,
          audience: options.resource,
          accessTokenTTL: options.ttl,
          accessTokenFormat: "jwt",
          jwt: { sign: { alg: "ES256" } },
        });
        ctx.body = {
          access_token: await accessToken.save(),
          issued_token_type: ACCESS_TOKEN_TYPE,
          token_type: "Bearer",
          expires_in: options.ttl,
        };
      },
      [
        "subject_token",
        "subject_token_type",
        "requested_token_type",
        "resource",
        "audience",
        "scope",
      ],
    );
  }
  const handler = provider.callback();
  const jwks = createRemoteJWKSet(new URL(`${issuer}/jwks`));
  let tokenRequests = 0;
  let failures = 0;
  const state = {
    delayMs: 0,
  };
  const user = options.authorizationCode?.user ?? "nobody";
  const scope = options.scope ?? "upstream:read";
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    if (req.url?.startsWith("/sso/")) {
      void (async () => {
        const details = await provider.interactionDetails(req, res);
        if (details.prompt.name === "login") {
          await provider.interactionFinished(req, res, { login: { accountId: user } });
          return;
        }
        const grant = new provider.Grant({ accountId: user, clientId: details.params.client_id });
        grant.addResourceScope(options.resource, scope);
        await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } });
      })();
      return;
    }
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
    authorizationUrl: `${issuer}/auth`,
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
    exchangedFor,
    async claims(token) {
      try {
        return (await jwtVerify(token, jwks, { issuer, audience: options.resource })).payload;
      } catch {
        return undefined;
      }
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
