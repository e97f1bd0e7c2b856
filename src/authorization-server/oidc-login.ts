/**
 * Sign-in delegated to the company's OpenID Connect provider (`login: {type: oidc}`): the
 * login step of an authorization request sends the browser to the provider (authorization
 * code, PKCE S256, state and nonce), the provider sends it back to `/oauth/login/callback`, and
 * the verified ID token names the user. The gateway is the provider's client; what the user
 * may grant the MCP client is then decided on the gateway's consent page as for local users.
 */
import { createHash, randomBytes } from "node:crypto";
import { createRemoteJWKSet, customFetch, type JWTVerifyGetKey, jwtVerify } from "jose";
import type { Config } from "../config/schema.js";
import type { Outbound } from "../lib/outbound.js";

export type OidcLoginConfig = Extract<Config["authorization_server"]["login"], { type: "oidc" }>;

interface ProviderMetadata {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  jwks_uri: string;
}

/** A sign-in in progress at the provider, by its `state`. */
interface Pending {
  uid: string;
  verifier: string;
  nonce: string;
}

/** How long a user has at the provider, and to come back with the ticket. */
const PENDING_MS = 10 * 60_000;
/** Time allowed for each fetch at the provider. */
const PROVIDER_TIMEOUT_MS = 10_000;
/** Largest discovery document, token response or JWK Set read from the provider. */
const PROVIDER_MAX_BYTES = 256 * 1024;

/**
 * Where sign-ins in progress (by `state`) and the tickets of confirmed ones wait: the
 * authorization server's store, so that the provider may send the user back to any replica.
 */
export interface OnceStore {
  putOnce(key: string, value: string, ttlMs: number): Promise<void>;
  takeOnce(key: string): Promise<string | undefined>;
}

export class OidcLogin {
  readonly #config: OidcLoginConfig;
  readonly #callbackUrl: string;
  readonly #once: OnceStore;
  readonly #outbound: Outbound;
  #metadata: Promise<{ metadata: ProviderMetadata; keys: JWTVerifyGetKey }> | undefined;

  constructor(config: OidcLoginConfig, callbackUrl: string, once: OnceStore, outbound: Outbound) {
    this.#config = config;
    this.#callbackUrl = callbackUrl;
    this.#once = once;
    this.#outbound = outbound;
  }

  get scopes(): readonly string[] {
    return this.#config.scopes;
  }

  /** Where to send the browser to sign in, for the authorization request `uid`. */
  async authorizationUrl(uid: string): Promise<string> {
    const { metadata } = await this.#discover();
    const state = randomBytes(24).toString("base64url");
    const verifier = randomBytes(32).toString("base64url");
    const nonce = randomBytes(16).toString("base64url");
    const pending: Pending = { uid, verifier, nonce };
    await this.#once.putOnce(`login:${state}`, JSON.stringify(pending), PENDING_MS);
    const url = new URL(metadata.authorization_endpoint);
    url.search = new URLSearchParams({
      response_type: "code",
      client_id: this.#config.client_id,
      redirect_uri: this.#callbackUrl,
      scope: "openid email profile",
      state,
      nonce,
      code_challenge: createHash("sha256").update(verifier).digest("base64url"),
      code_challenge_method: "S256",
    }).toString();
    return url.href;
  }

  /**
   * The provider's redirect back: the code exchanged, the ID token verified. Returns the
   * authorization request it belongs to and a one-time ticket for its interaction page.
   */
  async callback(query: URLSearchParams): Promise<{ uid: string; ticket: string }> {
    const state = query.get("state") ?? "";
    const stored = await this.#once.takeOnce(`login:${state}`);
    if (stored === undefined) {
      throw new LoginError("This sign-in has expired or was not started here.");
    }
    const pending = JSON.parse(stored) as Pending;
    const error = query.get("error");
    if (error !== null) {
      throw new LoginError(
        `The sign-in provider refused: ${query.get("error_description") ?? error}.`,
      );
    }
    const { metadata, keys } = await this.#discover();
    const response = await this.#outbound.fetch(metadata.token_endpoint, {
      method: "POST",
      headers: {
        authorization: `Basic ${Buffer.from(
          `${encodeURIComponent(this.#config.client_id)}:${encodeURIComponent(this.#config.client_secret)}`,
        ).toString("base64")}`,
      },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code: query.get("code") ?? "",
        redirect_uri: this.#callbackUrl,
        code_verifier: pending.verifier,
      }),
      timeoutMs: PROVIDER_TIMEOUT_MS,
      maxBytes: PROVIDER_MAX_BYTES,
    });
    const tokens = (await response.json().catch(() => ({}))) as { id_token?: string };
    if (!response.ok || typeof tokens.id_token !== "string") {
      throw new LoginError("The sign-in provider did not confirm the sign-in.");
    }
    const { payload } = await jwtVerify(tokens.id_token, keys, {
      issuer: metadata.issuer,
      audience: this.#config.client_id,
    }).catch(() => {
      throw new LoginError("The sign-in provider's answer could not be verified.");
    });
    if (payload.nonce !== pending.nonce) {
      throw new LoginError("The sign-in provider's answer is not for this sign-in.");
    }
    const name = payload[this.#config.username_claim];
    if (typeof name !== "string" || name === "") {
      throw new LoginError(
        `The sign-in provider did not say who you are (${this.#config.username_claim}).`,
      );
    }
    const ticket = randomBytes(24).toString("base64url");
    await this.#once.putOnce(
      `ticket:${ticket}`,
      JSON.stringify({ uid: pending.uid, accountId: name }),
      PENDING_MS,
    );
    return { uid: pending.uid, ticket };
  }

  /** The user a ticket confirmed, once, for the authorization request it was made for. */
  async take(ticket: string, uid: string): Promise<string | undefined> {
    const stored = await this.#once.takeOnce(`ticket:${ticket}`);
    if (stored === undefined) return undefined;
    const entry = JSON.parse(stored) as { uid: string; accountId: string };
    return entry.uid === uid ? entry.accountId : undefined;
  }

  #discover() {
    this.#metadata ??= (async () => {
      const base = this.#config.issuer.replace(/\/$/, "");
      const get = { timeoutMs: PROVIDER_TIMEOUT_MS, maxBytes: PROVIDER_MAX_BYTES };
      const response = await this.#outbound.fetch(`${base}/.well-known/openid-configuration`, {
        ...get,
        followRedirects: true,
      });
      if (!response.ok) throw new Error(`OIDC discovery at ${base}: HTTP ${response.status}`);
      const metadata = (await response.json()) as ProviderMetadata;
      // jose fetches and caches the keys; each fetch goes through the guard.
      const keys = createRemoteJWKSet(new URL(metadata.jwks_uri), {
        [customFetch]: (
          url: string,
          { headers, signal }: { headers: Headers; signal: AbortSignal },
        ) =>
          this.#outbound.fetch(url, {
            ...get,
            headers: Object.fromEntries(headers),
            signal,
            followRedirects: true,
          }),
      });
      return { metadata, keys };
    })();
    // A failed discovery is tried again by the next sign-in.
    this.#metadata.catch(() => {
      this.#metadata = undefined;
    });
    return this.#metadata;
  }
}

/** A sign-in that cannot go on: its message is shown to the user. */
export class LoginError extends Error {
  override readonly name = "LoginError";
}
