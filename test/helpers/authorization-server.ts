/**
 * A real, external OAuth 2.1 authorization server for tests: `oidc-provider`, run in-process on
 * 127.0.0.1, issuing RFC 9068 JWT access tokens through the client_credentials grant with
 * RFC 8707 resource indicators. Nobody on this project wrote it, so tests against it catch the
 * misreadings of the specs that a hand-rolled token minter would share with the gateway.
 *
 * What the tokens carry (oidc-provider 9.13, checked by test/integration/authorization-server):
 *   header  { alg: "ES256", typ: "at+jwt", kid }
 *   payload { iss, aud, sub: client_id, client_id, scope?, iat, exp, jti }
 * `iss` is exactly `issuer` below: `http://127.0.0.1:<port>`, no trailing slash. `aud` is the
 * resource's audience (a string, not an array). `scope` is left out when no scope was granted.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair } from "jose";
import { importOidcProvider } from "../../src/authorization-server/oidc-provider-module.js";

export interface TestClient {
  client_id: string;
  client_secret: string;
  /** Space-separated scopes this client may be granted, on any resource that offers them. */
  scope: string;
}

export interface TestResource {
  /** The RFC 8707 resource indicator clients send, an absolute URL: the gateway's public_url. */
  indicator: string;
  /** Space-separated scopes the resource offers. */
  scope: string;
  /** The tokens' `aud`; defaults to `indicator`. */
  audience?: string;
}

export interface TestAuthorizationServer {
  /** Exactly what the tokens' `iss` and the discovery documents' `issuer` carry. */
  issuer: string;
  jwksUri: string;
  tokenEndpoint: string;
  /**
   * Makes one more resource indicator known. For resource servers listening on port 0: the
   * indicator has to name their real port, which is only known once they listen, and they in
   * turn need `issuer` in their configuration.
   */
  addResource(resource: TestResource): void;
  /**
   * Runs a real client_credentials grant over HTTP against the token endpoint and returns the
   * access token. `scope` defaults to everything the client may get; the server grants the part
   * of it that both the client and the resource allow, and drops the rest without an error.
   * Rejects with a {@link TokenRequestError} when the server refuses.
   */
  clientCredentialsToken(opts: {
    client: TestClient;
    resource: string;
    scope?: string;
  }): Promise<string>;
  close(): Promise<void>;
}

/** An OAuth error response (RFC 6749 section 5.2) from the token endpoint. */
export class TokenRequestError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly description?: string,
  ) {
    super(
      `token request refused with HTTP ${status}: ${error}${description ? ` (${description})` : ""}`,
    );
    this.name = "TokenRequestError";
  }
}

export async function startAuthorizationServer(opts: {
  clients: TestClient[];
  resources: TestResource[];
}): Promise<TestAuthorizationServer> {
  const { default: Provider, errors } = await importOidcProvider<OidcProviderModule>();

  const resources = new Map<string, TestResource>();
  const addResource = (resource: TestResource) => {
    resources.set(resource.indicator, resource);
  };
  opts.resources.forEach(addResource);
  const clientScopes = new Map(opts.clients.map((c) => [c.client_id, new Set(words(c.scope))]));

  // ES256 rather than RS256: same asymmetric verification path for the gateway, at a fraction
  // of the RSA key generation time every test file would pay.
  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  const signingKey = {
    ...(await exportJWK(privateKey)),
    kid: "test-as-1",
    alg: "ES256",
    use: "sig",
  };

  // The issuer has to name the port, so the socket is bound before the provider exists.
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;
  const close = () =>
    new Promise<void>((resolve, reject) => {
      server.closeAllConnections();
      server.close((err) => (err ? reject(err) : resolve()));
    });

  try {
    return await serve();
  } catch (err) {
    await close();
    throw err;
  }

  async function serve(): Promise<TestAuthorizationServer> {
    const provider = new Provider(issuer, {
      jwks: { keys: [signingKey] },
      adapter: memoryAdapter(),
      clients: opts.clients.map((c) => ({
        client_id: c.client_id,
        client_secret: c.client_secret,
        grant_types: ["client_credentials"],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: "client_secret_basic",
      })),
      // Never used (no ID tokens are issued), but every client is validated against the keystore,
      // and the RS256 default would have no key.
      clientDefaults: { id_token_signed_response_alg: "ES256" },
      features: {
        // The login/consent pages are for interactive flows; disabled, they also stop warning.
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          // oidc-provider only ever grants the intersection of the requested scopes and this
          // `scope`, so narrowing it to the client's allowance enforces TestClient.scope.
          getResourceServerInfo(_ctx: unknown, indicator: string, client: { clientId: string }) {
            const resource = resources.get(indicator);
            if (!resource) throw new errors.InvalidTarget();
            const allowed = clientScopes.get(client.clientId) ?? new Set<string>();
            return {
              scope: words(resource.scope)
                .filter((s) => allowed.has(s))
                .join(" "),
              audience: resource.audience ?? resource.indicator,
              accessTokenFormat: "jwt",
              jwt: { sign: { alg: "ES256" } },
            };
          },
        },
      },
      // Ten minutes, set explicitly, which also keeps the "you SHOULD change it" notice quiet.
      ttl: { ClientCredentials: 600 },
    });
    server.on("request", provider.callback());

    // Read the endpoints the way a resource server or client would, which also proves discovery.
    const discovery = await fetch(`${issuer}/.well-known/openid-configuration`);
    if (!discovery.ok) throw new Error(`discovery failed with HTTP ${discovery.status}`);
    const metadata = (await discovery.json()) as { jwks_uri: string; token_endpoint: string };

    return {
      issuer,
      jwksUri: metadata.jwks_uri,
      tokenEndpoint: metadata.token_endpoint,
      addResource,
      async clientCredentialsToken({ client, resource, scope = client.scope }) {
        // RFC 6749 section 2.3.1: the credentials are form-encoded before they are base64-encoded.
        const basic = Buffer.from(
          `${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret)}`,
        ).toString("base64");
        const res = await fetch(metadata.token_endpoint, {
          method: "POST",
          headers: { authorization: `Basic ${basic}`, accept: "application/json" },
          body: new URLSearchParams({ grant_type: "client_credentials", resource, scope }),
        });
        const body = (await res.json()) as {
          access_token?: string;
          error?: string;
          error_description?: string;
        };
        if (!res.ok || body.access_token === undefined) {
          throw new TokenRequestError(res.status, body.error ?? "none", body.error_description);
        }
        return body.access_token;
      },
      close,
    };
  }
}

function words(scope: string): string[] {
  return scope.split(" ").filter((s) => s !== "");
}

/** The part of oidc-provider's API used here; the package ships no type declarations. */
interface OidcProviderModule {
  default: new (
    issuer: string,
    configuration: object,
  ) => { callback(): (req: IncomingMessage, res: ServerResponse) => void };
  errors: { InvalidTarget: new (description?: string) => Error };
}

/**
 * Storage for oidc-provider's models. Its built-in memory adapter does the same but warns that
 * it is development-only on every start. Self-contained JWT access tokens are never stored, so
 * this holds little more than the odd replay-detection entry; expiry is left to the models,
 * which check `exp` on everything they read back.
 */
function memoryAdapter() {
  const store = new Map<string, Record<string, unknown>>();
  return (model: string) => {
    const key = (id: string) => `${model}:${id}`;
    const findBy = (field: string, value: string) => {
      for (const [k, payload] of store) {
        if (k.startsWith(`${model}:`) && payload[field] === value) return payload;
      }
      return undefined;
    };
    return {
      async upsert(id: string, payload: Record<string, unknown>) {
        store.set(key(id), payload);
      },
      async find(id: string) {
        return store.get(key(id));
      },
      async findByUid(uid: string) {
        return findBy("uid", uid);
      },
      async findByUserCode(userCode: string) {
        return findBy("userCode", userCode);
      },
      async consume(id: string) {
        const payload = store.get(key(id));
        if (payload) payload.consumed = Math.floor(Date.now() / 1000);
      },
      async destroy(id: string) {
        store.delete(key(id));
      },
      async revokeByGrantId(grantId: string) {
        for (const [k, payload] of store) {
          if (payload.grantId === grantId) store.delete(k);
        }
      },
    };
  };
}
