/**
 * A company's OpenID Connect provider, for the gateway to delegate sign-in to: oidc-provider on
 * `localhost` (a host of its own, so that its cookies are not the gateway's), with one
 * confidential client (the gateway) and a user who is signed in and consents at once, as after
 * a single sign-on. What it proves is the gateway's side: redirect, code exchange, ID token.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair } from "jose";
import { importOidcProvider } from "../../src/authorization-server/oidc-provider-module.js";

export interface IdentityProvider {
  issuer: string;
  /** Authorization requests it received. */
  authorizations: URL[];
  close(): Promise<void>;
}

/** The part of oidc-provider's Provider the test servers use (it ships no types). */
export interface OidcProvider {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  interactionDetails(
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<{ prompt: { name: string }; params: { client_id: string } }>;
  interactionFinished(
    req: IncomingMessage,
    res: ServerResponse,
    result: Record<string, unknown>,
  ): Promise<void>;
  Grant: new (options: {
    accountId: string;
    clientId: string;
  }) => {
    addOIDCScope(scope: string): void;
    addResourceScope(resource: string, scope: string): void;
    save(): Promise<string>;
  };
  registerGrantType(
    name: string,
    handler: (ctx: {
      oidc: { params: Record<string, unknown>; client: { clientId: string } };
      status: number;
      body: unknown;
    }) => Promise<void>,
    params: string[],
  ): void;
  AccessToken: new (
    options: Record<string, unknown>,
  ) => {
    resourceServer: unknown;
    save(): Promise<string>;
  };
  ResourceServer: new (identifier: string, info: Record<string, unknown>) => unknown;
}

export async function startIdentityProvider(options: {
  clientId: string;
  clientSecret: string;
  redirectUri: string;
  /** Who signs in: the ID token's `sub`; `email` is `<sub>@example.com`. */
  user: string;
}): Promise<IdentityProvider> {
  const { default: OidcProvider } = await importOidcProvider<{
    default: new (issuer: string, configuration: object) => OidcProvider;
  }>();
  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const issuer = `http://localhost:${(server.address() as AddressInfo).port}`;
  const provider = new OidcProvider(issuer, {
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: "idp-1", alg: "ES256", use: "sig" }] },
    clients: [
      {
        client_id: options.clientId,
        client_secret: options.clientSecret,
        redirect_uris: [options.redirectUri],
        grant_types: ["authorization_code"],
        response_types: ["code"],
        token_endpoint_auth_method: "client_secret_basic",
        id_token_signed_response_alg: "ES256",
      },
    ],
    claims: { openid: ["sub"], email: ["email"] },
    // Scope claims in the ID token, as Google, Entra and Okta put them.
    conformIdTokenClaims: false,
    findAccount: (_ctx: unknown, id: string) => ({
      accountId: id,
      claims: () => ({ sub: id, email: `${id}@example.com` }),
    }),
    interactions: {
      url: (_ctx: unknown, interaction: { uid: string }) => `/sso/${interaction.uid}`,
    },
    features: { devInteractions: { enabled: false } },
    ttl: { Interaction: 600, Session: 3600, Grant: 3600, IdToken: 600, AuthorizationCode: 60 },
  });
  const authorizations: URL[] = [];
  const handle = provider.callback();
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", issuer);
    if (url.pathname === "/auth") authorizations.push(url);
    if (!url.pathname.startsWith("/sso/")) {
      handle(req, res);
      return;
    }
    void (async () => {
      const details = await provider.interactionDetails(req, res);
      if (details.prompt.name === "login") {
        await provider.interactionFinished(req, res, { login: { accountId: options.user } });
        return;
      }
      const grant = new provider.Grant({
        accountId: options.user,
        clientId: details.params.client_id,
      });
      grant.addOIDCScope("openid email profile");
      await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } });
    })();
  });
  return {
    issuer,
    authorizations,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
