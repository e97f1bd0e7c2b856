/**
 * The configuration schema: the single source of the TypeScript type, the validation rules,
 * the defaults and the reference table in docs/configuration.md (see `reference.ts`).
 */
import { isIP } from "node:net";
import { z } from "zod";
import { AllowedAddresses, parseAddressRange } from "../lib/addresses.js";
import { parseRate } from "../policy/rate-limit.js";
import { parseSessionKey } from "../upstream/session-seal.js";
import { parseDuration, parseSize } from "./units.js";

/** What an API key's `id` may be (it is written to the audit log and to log lines). */
export const KEY_ID = /^[A-Za-z0-9._:@-]{1,64}$/;

/** A duration such as `30s`; the parsed value is in milliseconds. */
function duration(defaultValue: string) {
  return durationValue().prefault(defaultValue);
}

const redisUrl = z.string().regex(/^rediss?:\/\/[^/]/, "must be a redis:// or rediss:// URL");

/** A duration without a default (for keys whose default depends on other keys). */
function durationValue() {
  return z
    .string()
    .transform((text, ctx) => {
      const ms = parseDuration(text);
      if (ms === undefined) {
        ctx.addIssue({
          code: "custom",
          message: `invalid duration "${text}": use a number and a unit (ms, s, m, h, d), like 30s or 5m`,
        });
        return z.NEVER;
      }
      return ms;
    })
    .meta({ format: "duration" });
}

/** A size such as `4MiB` or a plain number of bytes; the parsed value is in bytes. */
function size(defaultValue: string) {
  return z
    .union([z.string(), z.number().int().nonnegative()])
    .transform((value, ctx) => {
      const bytes = typeof value === "number" ? value : parseSize(value);
      if (bytes === undefined || bytes <= 0) {
        ctx.addIssue({
          code: "custom",
          message: `invalid size "${value}": use a positive number of bytes or a unit (KiB, MiB, KB, MB), like 4MiB`,
        });
        return z.NEVER;
      }
      return bytes;
    })
    .prefault(defaultValue)
    .meta({ format: "size" });
}

export interface ListenAddress {
  host: string;
  port: number;
}

/** `127.0.0.1:8080`, `[::1]:8080`, `:8080` (every interface). */
export function parseListen(text: string): ListenAddress | string {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  if (!match) return `invalid address "${text}": use HOST:PORT, like 127.0.0.1:8080`;
  const host = match[1] ?? match[2] ?? "";
  const port = Number(match[3]);
  if (port > 65_535) return `invalid port ${port}: use 0-65535`;
  if (match[1] !== undefined && isIP(host) !== 6) return `invalid IPv6 address "${host}"`;
  return { host: host === "" ? "0.0.0.0" : host, port };
}

/** `HOST:PORT`; the parsed value is a ListenAddress. */
function hostPort() {
  return z
    .string()
    .transform((text, ctx) => {
      const parsed = parseListen(text);
      if (typeof parsed === "string") {
        ctx.addIssue({ code: "custom", message: parsed });
        return z.NEVER;
      }
      return parsed;
    })
    .meta({ format: "host:port" });
}

/**
 * Marks a key that is bound at start (into the listener, the tracer, the metrics server): a
 * reload that changes it says a restart is needed (RESTART_REQUIRED), and the reference table
 * says "Restart to change.".
 */
function restartOnly<T extends z.ZodType>(schema: T): T {
  return schema.meta({ restart: true }) as T;
}

const listen = restartOnly(
  hostPort().prefault("127.0.0.1:8080").describe("Address the gateway listens on."),
);

const httpUrl = z.string().refine(
  (text) => {
    try {
      const url = new URL(text);
      return (url.protocol === "http:" || url.protocol === "https:") && url.hash === "";
    } catch {
      return false;
    }
  },
  { message: "must be an absolute http:// or https:// URL without a #fragment" },
);

/** argon2id PHC string; the leading `$` may be dropped because YAML users often lose it. */
const argon2idHash = z
  .string()
  .transform((text) => (text.startsWith("$") ? text : `$${text}`))
  .refine(
    (text) => /^\$argon2id\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/.test(text),
    {
      message:
        "must be an argon2id PHC hash ($argon2id$v=19$m=...,t=...,p=...$salt$hash): make one with `mcpgw hash-key`",
    },
  );

const apiKey = z.strictObject({
  id: z
    .string()
    .regex(KEY_ID, "must be 1-64 characters of A-Z a-z 0-9 . _ : @ -")
    .describe("Name of the key, written to the audit log as key_id."),
  hash: argon2idHash.describe("argon2id hash of the key (`mcpgw hash-key`); never the key itself."),
  scopes: z
    .array(z.string().min(1))
    .default(["*"])
    .describe("Scopes the key grants; `*` grants every scope."),
  routes: z
    .array(z.string())
    .optional()
    .describe(
      "Route paths the key may call; unset, every route. A key used on another route gets 401 invalid_token.",
    ),
});

const scopeToken = z
  .string()
  .regex(
    /^[\x21\x23-\x5b\x5d-\x7e]+$/,
    "must be an RFC 6749 §3.3 scope token (no spaces or quotes)",
  );

const publicUrl = httpUrl.refine((text) => !text.includes("?"), {
  message: "must not have a query",
});

const urlPath = z.string().regex(/^\/[^?#]*$/, "must be an absolute path");

/** What every grant towards an upstream's token endpoint needs. */
const tokenEndpoint = {
  token_url: httpUrl.describe("The authorization server's token endpoint."),
  client_id: z.string().min(1).describe("The gateway's client id there."),
  client_secret: z
    .string()
    .min(1)
    .describe("Its secret: ${ENV_VAR} or an enc:v1 value (`mcpgw encrypt-secret`)."),
  scopes: z.array(scopeToken).default([]).describe("Scopes to ask for."),
  resource: z
    .string()
    .optional()
    .describe("RFC 8707 resource indicator: the upstream the token is for."),
  auth_method: z
    .enum(["client_secret_basic", "client_secret_post"])
    .default("client_secret_basic")
    .describe("How the client authenticates at the token endpoint."),
  timeout: duration("10s").describe("How long one token request may take."),
};

const retries = z
  .number()
  .int()
  .min(0)
  .max(10)
  .default(2)
  .describe(
    "Retries of a token request that failed with 5xx, 429, a timeout or a network error (backoff from 200 ms).",
  );

/**
 * The gateway's own credentials towards an HTTP upstream (never the client's): a static token,
 * an OAuth access token of its own (client credentials), the caller's own delegated token
 * (authorization code), or one exchanged for the caller's (RFC 8693).
 */
const upstreamAuth = z.discriminatedUnion("type", [
  z
    .strictObject({
      type: z.literal("bearer"),
      token: z
        .string()
        .min(1)
        .optional()
        .describe("The token: use ${ENV_VAR} or an enc:v1 value, never the token itself."),
      token_file: z
        .string()
        .min(1)
        .optional()
        .describe(
          "A file holding the token (read at start and on reload; relative to the config file).",
        ),
      header: z
        .string()
        .regex(/^[A-Za-z0-9-]+$/, "must be an HTTP header name")
        .default("authorization")
        .describe(
          "The request header it goes in: `authorization` sends `Bearer <token>`, any other header the token as it is (e.g. X-API-Key).",
        ),
    })
    .refine((value) => (value.token === undefined) !== (value.token_file === undefined), {
      message: "set one of token or token_file",
    }),
  z.strictObject({
    type: z.literal("client_credentials"),
    ...tokenEndpoint,
    audience: z
      .string()
      .optional()
      .describe("`audience` parameter, for servers that take it instead of resource."),
    max_retries: retries,
  }),
  z.strictObject({
    type: z.literal("token_exchange"),
    ...tokenEndpoint,
    audience: z.string().optional().describe("RFC 8693 audience, for servers that take it."),
    max_retries: retries,
  }),
  z.strictObject({
    type: z.literal("authorization_code"),
    authorization_url: httpUrl.describe(
      "The provider's authorization endpoint, where each user connects an account.",
    ),
    ...tokenEndpoint,
    redirect_uri: httpUrl
      .optional()
      .describe(
        "Registered at the provider. Default: <gateway origin>/oauth/callback, the origin of auth.oauth.public_url or authorization_server.issuer.",
      ),
  }),
]);

/** One kind of three, by the key that is set: `url`, `targets` or `command`. */
const upstream = z
  .strictObject({
    url: httpUrl.optional().describe("An MCP server's Streamable HTTP endpoint."),
    targets: z
      .array(httpUrl)
      .min(1)
      .optional()
      .describe(
        "A pool of equivalent MCP servers: each new session goes to the healthy one with the fewest requests in flight, and stays there.",
      ),
    command: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe(
        'A stdio MCP server: its argv, one child process per MCP session, e.g. [npx, -y, "@modelcontextprotocol/server-everything", stdio].',
      ),
    timeout: duration("60s").describe(
      "HTTP: how long to wait for the upstream's response headers. Streams are not cut by it.",
    ),
    health_check: z
      .strictObject({
        interval: duration("10s").describe("How often each target is probed."),
        timeout: duration("2s").describe("A target that has not answered by then is down."),
      })
      .optional()
      .describe(
        "Pools: the targets' health check (any HTTP answer is healthy). Default: every 10s, 2s timeout.",
      ),
    env: z
      .record(z.string(), z.string())
      .optional()
      .describe(
        "stdio: the child's whole environment besides PATH (`${VAR}` expanded); the gateway's own is never passed on.",
      ),
    cwd: z
      .string()
      .min(1)
      .optional()
      .describe(
        "stdio: the child's working directory, relative to the config file's folder. Default: the gateway's.",
      ),
    max_sessions: z
      .number()
      .int()
      .positive()
      .optional()
      .describe("stdio: most sessions (child processes) at once; more get 503. Default 32."),
    idle_timeout: durationValue()
      .optional()
      .describe(
        "stdio: a session without requests for this long ends with its child. Default 10m.",
      ),
    auth: upstreamAuth
      .optional()
      .describe(
        "HTTP and pools: the gateway's own credentials towards the upstream, sent instead of the client's (which are never forwarded).",
      ),
  })
  .superRefine((value, ctx) => {
    const kinds = (["url", "targets", "command"] as const).filter(
      (key) => value[key] !== undefined,
    );
    if (kinds.length !== 1) {
      ctx.addIssue({
        code: "custom",
        message:
          kinds.length === 0
            ? "needs one of url (an HTTP MCP server), targets (a pool) or command (a stdio server)"
            : `set only one of ${kinds.join(", ")}`,
      });
      return;
    }
    const only: Record<string, readonly string[]> = {
      health_check: ["targets"],
      env: ["command"],
      cwd: ["command"],
      max_sessions: ["command"],
      idle_timeout: ["command"],
      auth: ["url", "targets"],
    };
    for (const [key, allowed] of Object.entries(only)) {
      if (value[key as keyof typeof value] !== undefined && !allowed.includes(kinds[0] as string)) {
        ctx.addIssue({
          code: "custom",
          path: [key],
          message: `only applies to ${
            allowed.length > 1
              ? "an HTTP (url) or pool (targets)"
              : allowed[0] === "targets"
                ? "a pool (targets)"
                : "a stdio (command)"
          } upstream`,
        });
      }
    }
  });

const protocol = z
  .strictObject({
    min_version: z
      .string()
      .regex(/^\d{4}-\d{2}-\d{2}$/, 'must be an MCP revision, like "2026-07-28"')
      .optional()
      .describe(
        'Refuse requests of older MCP revisions (400, JSON-RPC -32022): "2026-07-28" serves only stateless clients, whose Mcp-Method / Mcp-Name headers the gateway has checked.',
      ),
  })
  .optional();

const route = z.strictObject({
  path: urlPath.describe("The exact path of this MCP endpoint, e.g. /agents/github/mcp."),
  upstream,
  protocol: protocol.describe("MCP revisions this route serves (default: every one)."),
  oauth: z
    .strictObject({
      public_url: publicUrl
        .optional()
        .describe(
          "The URL clients use for this route (its RFC 9728 `resource`). Default: the origin of auth.oauth.public_url with the route's path.",
        ),
      audience: z
        .string()
        .min(1)
        .optional()
        .describe("Replaces auth.oauth.audience on this route."),
      required_scopes: z
        .array(scopeToken)
        .optional()
        .describe("Replaces auth.oauth.required_scopes on this route."),
    })
    .optional()
    .describe("Per-route OAuth resource server settings."),
});

const asUser = z.strictObject({
  username: z
    .string()
    .regex(/^[A-Za-z0-9._@-]{1,128}$/, "must be 1-128 characters of A-Z a-z 0-9 . _ @ -")
    .describe("The login name, and the tokens' `sub`."),
  password_hash: argon2idHash.describe("argon2id hash of the password (`mcpgw hash-password`)."),
  scopes: z
    .array(scopeToken)
    .default([])
    .describe("Scopes this user may grant a client; a token gets the requested ones of these."),
});

const asClient = z.strictObject({
  client_id: z
    .string()
    .regex(/^[A-Za-z0-9._:@-]{1,128}$/, "must be 1-128 characters of A-Z a-z 0-9 . _ : @ -")
    .describe("The client's id, the tokens' `sub` and `client_id`."),
  client_secret_hash: argon2idHash.describe(
    "argon2id hash of the client secret (`mcpgw gen-key` makes a secret and its hash).",
  ),
  grant_types: z
    .array(z.enum(["client_credentials"]))
    .default(["client_credentials"])
    .describe("What the client may do: client_credentials (machine to machine)."),
  scopes: z.array(scopeToken).default([]).describe("Scopes the client may be granted."),
});

const authorizationServer = z
  .strictObject({
    enabled: z
      .boolean()
      .default(false)
      .describe(
        "Run the gateway's own OAuth 2.1 authorization server (oidc-provider): MCP clients log in through the browser, with no external identity provider.",
      ),
    issuer: publicUrl
      .optional()
      .describe(
        "Its issuer: the gateway's public origin, exactly as clients reach it. Default: the origin of auth.oauth.public_url.",
      ),
    state_dir: z
      .string()
      .min(1)
      .default("mcpgw-state")
      .describe(
        "Where its signing and cookie keys are kept (created, mode 0700; files 0600), relative to the config file.",
      ),
    store: z
      .discriminatedUnion("type", [
        z
          .strictObject({ type: z.literal("sqlite") })
          .describe("One file in state_dir (Node 22.5+): nothing lost on restart; one replica."),
        z
          .strictObject({ type: z.literal("memory") })
          .describe("Registered clients, grants and refresh tokens are lost on restart."),
        z
          .strictObject({
            type: z.literal("redis"),
            url: redisUrl
              .optional()
              .describe("Default: the url of the top-level store (which must then be redis)."),
          })
          .describe(
            "Shared by every replica: clients, grants, codes, refresh tokens, revocations, and the signing and cookie keys (sealed with secrets.encryption_key, which must be set).",
          ),
      ])
      .optional()
      .describe(
        "Where clients, grants, codes and refresh tokens are kept. Default: redis when the top-level store is redis, else sqlite, or memory (with a warning) on a Node without node:sqlite.",
      ),
    login: z
      .discriminatedUnion("type", [
        z.strictObject({ type: z.literal("local") }),
        z.strictObject({
          type: z.literal("oidc"),
          issuer: httpUrl.describe("The OpenID Connect provider users sign in at."),
          client_id: z.string().min(1).describe("The gateway's client id there."),
          client_secret: z
            .string()
            .min(1)
            .describe("Its client secret there (use ${ENV_VAR}, never the value itself)."),
          scopes: z
            .array(scopeToken)
            .default([])
            .describe("Scopes every user signed in through the provider may grant."),
          username_claim: z
            .string()
            .min(1)
            .default("sub")
            .describe(
              "The ID token claim that names the user (`sub`, `email`, ...): the tokens' `sub`.",
            ),
        }),
      ])
      .default({ type: "local" })
      .describe(
        "How users sign in: local (the users below, with passwords) or oidc (delegated to your OpenID Connect provider; its redirect URI is <issuer>/oauth/login/callback).",
      ),
    users: z.array(asUser).default([]).describe("Who may log in."),
    clients: z
      .array(asClient)
      .default([])
      .describe("Pre-registered confidential clients (machine to machine, client_credentials)."),
    client_id_metadata_documents: z
      .strictObject({
        enabled: z
          .boolean()
          .default(true)
          .describe(
            "Accept an https:// URL as client_id, its Client ID Metadata Document fetched (the MCP 2026-07-28 way to identify clients).",
          ),
        allow_private_addresses: z
          .boolean()
          .default(false)
          .describe(
            "Fetch documents from loopback, private and link-local addresses too (refused by default: SSRF).",
          ),
      })
      .prefault({})
      .describe("Client ID Metadata Documents (CIMD)."),
    scopes: z
      .array(scopeToken)
      .default([])
      .describe(
        "Scopes clients may ask for, besides every route's required_scopes and every user's scopes.",
      ),
    access_token_ttl: duration("1h").describe("Lifetime of access tokens (JWT, RFC 9068)."),
    refresh_token_ttl: duration("30d").describe("Lifetime of refresh tokens (rotated on use)."),
    code_ttl: duration("120s").describe("Lifetime of authorization codes (single use)."),
  })
  .prefault({})
  .describe("The embedded OAuth 2.1 authorization server.");

const policyRule = z
  .strictObject({
    id: z
      .string()
      .regex(/^[A-Za-z0-9._:@-]{1,64}$/, "must be 1-64 characters of A-Z a-z 0-9 . _ : @ -")
      .describe("The rule's name, in audit lines (`rule`), spans and `mcpgw explain`."),
    match: z
      .strictObject({
        route: z.string().min(1).optional(),
        method: z.string().min(1).optional(),
        tool: z.string().min(1).optional(),
        prompt: z.string().min(1).optional(),
        resource: z.string().min(1).optional(),
        key_id: z.string().min(1).optional(),
        oauth_client_id: z.string().min(1).optional(),
        sub: z.string().min(1).optional(),
        scope: scopeToken.optional(),
      })
      .prefault({})
      .describe(
        "All given keys must match (globs: `*` any characters, `/` too; `?` one); `scope`: a scope the caller holds. None: every request.",
      ),
    effect: z.enum(["allow", "deny"]).optional().describe("allow or deny."),
    require_scopes: z
      .array(scopeToken)
      .min(1)
      .optional()
      .describe(
        "Instead of effect: the caller must hold these (403 insufficient_scope otherwise).",
      ),
  })
  .superRefine((rule, ctx) => {
    if ((rule.effect === undefined) === (rule.require_scopes === undefined)) {
      ctx.addIssue({ code: "custom", message: "set exactly one of effect and require_scopes" });
    }
  });

const sessionKey = z.string().superRefine((text, ctx) => {
  const parsed = parseSessionKey(text);
  if (typeof parsed === "string") ctx.addIssue({ code: "custom", message: parsed });
});

const oauth = z
  .strictObject({
    enabled: z.boolean().default(false).describe("Accept OAuth 2.1 JWT access tokens."),
    issuer: z
      .string()
      .min(1)
      .optional()
      .describe(
        "The authorization server's issuer; compared exactly with `iss` (mind trailing slashes).",
      ),
    audience: z.string().min(1).optional().describe("Must be one of the token's `aud` values."),
    jwks_url: httpUrl.optional().describe("The authorization server's JWKS, fetched and cached."),
    required_scopes: z
      .array(scopeToken)
      .default([])
      .describe(
        "Scopes every token must carry (in `scope` or `scp`); otherwise 403 insufficient_scope.",
      ),
    jwks_cache_ttl: duration("5m").describe(
      "How often the JWKS is refreshed in the background. A failed refresh keeps the last good keys.",
    ),
    leeway: duration("30s").describe("Clock skew allowed for `exp`, `nbf` and `iat`."),
    public_url: publicUrl
      .optional()
      .describe(
        "The URL clients use for the MCP endpoint: the RFC 9728 `resource`; its path is the path of the top-level `upstream`'s route, its origin the default origin of every route's.",
      ),
    metadata_path: urlPath
      .default("/.well-known/oauth-protected-resource")
      .describe(
        "Where the RFC 9728 metadata of the top-level `upstream`'s route is served (every route's is also at the path-suffixed well-known URL).",
      ),
  })
  .prefault({})
  .describe("The OAuth 2.1 resource server.");

export const configSchema = z
  .strictObject({
    listen,
    upstream: upstream
      .optional()
      .describe(
        "The MCP server behind the gateway: shorthand for one route at the path of `auth.oauth.public_url`, else `/mcp`.",
      ),
    protocol: protocol.describe(
      "MCP revisions the top-level `upstream`'s route serves (default: every one).",
    ),
    routes: z
      .array(route)
      .default([])
      .describe("MCP endpoints, each in front of its own MCP server (see Routes)."),
    policy: z
      .strictObject({
        default: z
          .enum(["allow", "deny"])
          .default("allow")
          .describe("The decision when no rule matches."),
        rules: z
          .array(policyRule)
          .default([])
          .describe("Ordered: the first rule that matches decides."),
      })
      .optional()
      .describe(
        "Which caller may call which method, tool, prompt or resource; lists show only what may be called.",
      ),
    rate_limits: z
      .array(
        z.strictObject({
          id: z
            .string()
            .regex(/^[A-Za-z0-9._:@-]{1,64}$/, "must be 1-64 characters of A-Z a-z 0-9 . _ : @ -")
            .describe("The limit's name, in audit lines (`rule`) and metrics."),
          key: z
            .enum(["principal", "tool", "global"])
            .describe(
              "One bucket per caller (key id, or OAuth client and subject), per tool, or one for all.",
            ),
          rate: z
            .string()
            .transform((text, ctx) => {
              const perMs = parseRate(text);
              if (perMs === undefined) {
                ctx.addIssue({
                  code: "custom",
                  message: `invalid rate "${text}": use N/s, N/m or N/h, like 100/s`,
                });
                return z.NEVER;
              }
              return { text, perMs };
            })
            .describe("Sustained rate: N/s, N/m or N/h."),
          burst: z
            .number()
            .int()
            .positive()
            .optional()
            .describe(
              "Bucket size: requests allowed at once. Default: one second's worth (at least 1).",
            ),
          route: z
            .string()
            .min(1)
            .optional()
            .describe("Only on routes whose path matches this glob. Default: every route."),
        }),
      )
      .optional()
      .describe("Token buckets; a request over one gets 429 with Retry-After."),
    store: z
      .discriminatedUnion("type", [
        z.strictObject({ type: z.literal("memory") }),
        z.strictObject({
          type: z.literal("redis"),
          url: redisUrl.describe(
            "redis://[user:password@]host:port[/db], or rediss:// for TLS; `${VAR}` expands, for the password.",
          ),
          key_prefix: z
            .string()
            .max(64)
            .default("mcpgw:")
            .describe("Put before every key the gateway writes."),
          timeout: duration("250ms").describe(
            "How long a command may take. A request whose command fails or times out goes on as if no limit applied (logged, counted in mcpgw_store_errors_total).",
          ),
        }),
      ])
      .prefault({ type: "memory" })
      .describe(
        "Where state shared by replicas is kept: the rate limits' buckets and users' delegated upstream tokens. memory: this process's own (tokens in secrets.state_dir); redis: shared by every replica.",
      ),
    secrets: z
      .strictObject({
        encryption_key: z
          .string()
          .min(32, "must have at least 32 characters (openssl rand -base64 32)")
          .optional()
          .describe(
            "Opens the config's enc:v1 values (`mcpgw encrypt-secret`) and seals what the gateway stores. Use ${AUTH_ENCRYPTION_SECRET}, never the value itself. Unset: $AUTH_ENCRYPTION_SECRET.",
          ),
        state_dir: z
          .string()
          .min(1)
          .default("mcpgw-state")
          .describe(
            "Where users' upstream tokens (authorization_code) are kept, sealed, in upstream-tokens.sqlite (Node 22.5+; in memory otherwise). Relative to the config file.",
          ),
        previous_encryption_keys: z
          .array(z.string().min(32))
          .default([])
          .describe(
            "Keys rotated out: values sealed under them still open, and are sealed again under encryption_key when rewritten.",
          ),
      })
      .prefault({})
      .describe("Secrets at rest: AES-256-GCM under a key derived from encryption_key."),
    sessions: z
      .strictObject({
        key: sessionKey
          .optional()
          .describe(
            "32 random bytes, base64 (`mcpgw gen-key --session`): seals the session ids of pool routes, so that any replica with the same key continues a session. Unset: a key of the process's own.",
          ),
      })
      .prefault({})
      .describe("MCP sessions the gateway issues ids for."),
    limits: z
      .strictObject({
        max_body_bytes: size("4MiB").describe(
          "Largest request body; larger requests get 413 and nothing is forwarded.",
        ),
        max_header_bytes: restartOnly(
          size("16KiB").describe("Largest request head; larger requests get 431."),
        ),
        headers_timeout: duration("10s").describe(
          "Time a client has to send the request headers (slowloris protection).",
        ),
        request_timeout: duration("30s").describe(
          "Time a client has to send the whole request, body included.",
        ),
        jwks_fetch_timeout: duration("5s").describe("Time allowed for one JWKS fetch."),
      })
      .prefault({})
      .describe("Limits that protect the gateway and the upstream from clients."),
    auth: z
      .strictObject({
        enabled: z
          .boolean()
          .default(true)
          .describe("false runs the gateway unauthenticated (audit auth_type `none`)."),
        keys: z
          .array(apiKey)
          .default([])
          .describe("Opaque API keys, stored as argon2id hashes (`mcpgw gen-key`)."),
        allow_demo_key: z
          .boolean()
          .default(false)
          .describe(
            "Accept a key entry whose hash verifies the demo key published in the README. Only for `npm start`'s demo: otherwise such an entry is a configuration error.",
          ),
        oauth,
      })
      .prefault({})
      .describe("Client authentication."),
    authorization_server: restartOnly(authorizationServer),
    audit: z
      .strictObject({
        path: z
          .string()
          .min(1)
          .describe(
            "JSONL audit file; relative paths are resolved against the config file's folder.",
          ),
        on_error: z
          .enum(["fail_open", "fail_closed"])
          .default("fail_open")
          .describe(
            "When audit writes fail: fail_open keeps serving (and logs loudly), fail_closed answers 503.",
          ),
      })
      .describe("The audit log: one JSON line per request to the MCP endpoint."),
    log: z
      .strictObject({
        level: z
          .enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"])
          .default("info")
          .describe("Log level of the JSON logs on stdout."),
      })
      .prefault({}),
    reload: z
      .strictObject({
        watch: z
          .boolean()
          .default(false)
          .describe("Reload when the config file changes, as on SIGHUP."),
        debounce: duration("500ms").describe(
          "Quiet time after the last file change before reloading.",
        ),
      })
      .prefault({}),
    telemetry: z
      .strictObject({
        enabled: z
          .boolean()
          .optional()
          .describe(
            "Export OpenTelemetry traces. Unset: on when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, unless OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none.",
          ),
        service_name: z
          .string()
          .min(1)
          .optional()
          .describe(
            "service.name of the spans; else OTEL_SERVICE_NAME, else service.name in OTEL_RESOURCE_ATTRIBUTES, else `mcpgw`.",
          ),
        otlp_endpoint: httpUrl
          .optional()
          .describe(
            "OTLP/HTTP base URL (traces go to <url>/v1/traces), e.g. Jaeger's http://127.0.0.1:4318; else the OTEL_* endpoint variables.",
          ),
        protocol: z
          .enum(["http/protobuf", "http/json"])
          .optional()
          .describe("OTLP encoding; else OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf."),
        headers: z
          .record(z.string(), z.string())
          .optional()
          .describe(
            "Headers sent to the collector (e.g. an API key); else OTEL_EXPORTER_OTLP_HEADERS.",
          ),
        sampler: z
          .enum([
            "always_on",
            "always_off",
            "traceidratio",
            "parentbased_always_on",
            "parentbased_always_off",
            "parentbased_traceidratio",
          ])
          .optional()
          .describe("Sampler; else OTEL_TRACES_SAMPLER, else parentbased_always_on."),
        sampler_ratio: z
          .number()
          .min(0)
          .max(1)
          .optional()
          .describe("Ratio for the traceidratio samplers; else OTEL_TRACES_SAMPLER_ARG, else 1."),
      })
      .prefault({})
      .describe(
        "OpenTelemetry tracing. A reload that changes these settings sends new requests' spans to the new exporter; those of requests already under way, and spans still queued, go to the old one.",
      ),
    metrics: restartOnly(
      z
        .strictObject({
          enabled: z.boolean().default(true).describe("Serve Prometheus metrics at /metrics."),
          listen: hostPort()
            .optional()
            .describe(
              "Serve /metrics on this address instead of the gateway's own (e.g. 127.0.0.1:9464).",
            ),
        })
        .prefault({})
        .describe("Prometheus metrics."),
    ),
    cors: z
      .strictObject({
        allowed_origins: z
          .array(
            z.string().refine((text) => text === "*" || isOrigin(text), {
              message:
                'must be an origin like "https://app.example.com" (scheme, host, port; no path) or "*"',
            }),
          )
          .default([])
          .describe(
            "Browser origins allowed to call the gateway. Requests with any other Origin get 403 (DNS-rebinding protection); `*` allows every origin.",
          ),
      })
      .prefault({})
      .describe("Cross-origin access for browser-based MCP clients."),
    outbound: z
      .strictObject({
        allow_private_addresses: z
          .boolean()
          .default(false)
          .describe(
            "Let the gateway's own fetches (JWKS, upstream token endpoints, the sign-in provider) reach any loopback, private or link-local address. Prefer allowed_networks, which opens only the ranges named.",
          ),
        allowed_networks: z
          .array(
            z.string().refine((text) => parseAddressRange(text) !== undefined, {
              message: 'must be an IP address or CIDR range, like "10.20.0.0/16" or "127.0.0.1"',
            }),
          )
          .default([])
          .describe(
            "Ranges the gateway's own fetches (JWKS, upstream token endpoints, the sign-in provider) may reach although loopback, private or link-local: where your identity provider or token endpoint lives (10.20.0.0/16, 127.0.0.1). Refused otherwise (SSRF protection).",
          ),
      })
      .prefault({})
      .describe(
        "Fetches the gateway makes itself: auth.oauth.jwks_url, upstream token endpoints, the sign-in provider's discovery, keys and token endpoint. Redirects to another origin are refused, answers are size-limited, and addresses that are loopback, private, link-local or otherwise special-use are refused unless allowed here (SSRF protection).",
      ),
    trust_proxy: z
      .array(
        z.string().refine((text) => parseAddressRange(text) !== undefined, {
          message: 'must be an IP address or CIDR range, like "127.0.0.1" or "10.0.0.0/8"',
        }),
      )
      .default([])
      .describe(
        "Addresses of reverse proxies whose X-Forwarded-For (client address in audit, metrics and spans) and X-Forwarded-Proto/Host (URLs without public_url) are believed.",
      ),
    shutdown_timeout: duration("10s").describe(
      "How long SIGTERM/SIGINT waits for in-flight requests before closing them.",
    ),
    workers: restartOnly(
      z
        .union([z.literal("auto"), z.number().int().min(1).max(256)])
        .default(1)
        .describe(
          "Processes serving the port: 1 serves in the process started; N (or auto: one per core) runs N workers under a primary that owns the signals, the config watch and one /metrics for all.",
        ),
    ),
  })
  .superRefine((config, ctx) => {
    const { oauth } = config.auth;
    if (
      config.auth.enabled &&
      config.auth.keys.length === 0 &&
      !oauth.enabled &&
      !config.authorization_server.enabled
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["auth", "keys"],
        message:
          "auth is enabled but neither API keys nor auth.oauth are configured, so every request would be refused: add a key (`mcpgw gen-key`), enable auth.oauth, or set auth.enabled: false to run unauthenticated",
      });
    }
    if (oauth.enabled && !config.auth.enabled) {
      ctx.addIssue({
        code: "custom",
        path: ["auth", "oauth", "enabled"],
        message: "auth.oauth.enabled: true requires auth.enabled: true",
      });
    }
    // With the embedded authorization server, the issuer and keys are its own.
    if (oauth.enabled && !config.authorization_server.enabled) {
      for (const key of ["issuer", "audience", "jwks_url"] as const) {
        if (oauth[key] === undefined) {
          ctx.addIssue({
            code: "custom",
            path: ["auth", "oauth", key],
            message: `required while auth.oauth.enabled is true`,
          });
        }
      }
    }
    checkRoutes(config, ctx);
    checkOutbound(config, ctx);
    checkAuthorizationServer(config, ctx);
    checkWorkers(config, ctx);
    const ruleIds = new Set<string>();
    config.policy?.rules.forEach((rule, index) => {
      if (ruleIds.has(rule.id)) {
        ctx.addIssue({
          code: "custom",
          path: ["policy", "rules", index, "id"],
          message: `duplicate rule id "${rule.id}"`,
        });
      }
      ruleIds.add(rule.id);
    });
    const seen = new Set<string>();
    config.auth.keys.forEach((key, index) => {
      if (seen.has(key.id)) {
        ctx.addIssue({
          code: "custom",
          path: ["auth", "keys", index, "id"],
          message: `duplicate key id "${key.id}"`,
        });
      }
      seen.add(key.id);
    });
  });

/**
 * Whether the authorization server keeps its state on Redis: said so, or left to the gateway's
 * `store`, which is redis.
 */
export function authorizationServerOnRedis(
  config: Pick<z.output<typeof configSchema>, "authorization_server" | "store">,
): boolean {
  const own = config.authorization_server.store;
  return own === undefined ? config.store.type === "redis" : own.type === "redis";
}

/**
 * What several worker processes cannot share without the Redis store: a stdio session (one
 * child in one process), the authorization server's revocations and sign-ins in progress, and
 * users' connects in progress, all held in one process's memory.
 */
function checkWorkers(config: z.output<typeof configSchema>, ctx: z.RefinementCtx) {
  if (config.workers === 1) return;
  const problem = (message: string) => ctx.addIssue({ code: "custom", path: ["workers"], message });
  const upstreams = [
    ...(config.upstream ? [{ where: "upstream", upstream: config.upstream }] : []),
    ...(config.routes ?? []).map((route, index) => ({
      where: `routes[${index}].upstream`,
      upstream: route.upstream,
    })),
  ];
  for (const { where, upstream } of upstreams) {
    if (upstream.command !== undefined) {
      problem(
        `${where} is a stdio server, whose sessions live in one process: run it with workers: 1`,
      );
    }
    if (upstream.auth?.type === "authorization_code" && config.store.type !== "redis") {
      problem(
        `${where}.auth (authorization_code) keeps users' tokens and connects in one process: with several workers set store: {type: redis, url}`,
      );
    }
  }
  if (config.authorization_server.enabled && !authorizationServerOnRedis(config)) {
    problem(
      "the authorization server keeps revocations and sign-ins in progress in one process: with several workers set store: {type: redis, url} (or authorization_server.store: {type: redis})",
    );
  }
}

function checkAuthorizationServer(config: z.output<typeof configSchema>, ctx: z.RefinementCtx) {
  const as = config.authorization_server;
  if (!as.enabled) return;
  if (as.issuer === undefined && config.auth.oauth.public_url === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["authorization_server", "issuer"],
      message:
        "the authorization server needs its issuer, the origin clients reach the gateway at: set authorization_server.issuer or auth.oauth.public_url",
    });
  }
  if (as.store?.type === "redis" && as.store.url === undefined && config.store.type !== "redis") {
    ctx.addIssue({
      code: "custom",
      path: ["authorization_server", "store", "type"],
      message:
        "redis needs a url: set authorization_server.store.url, or store: {type: redis, url} for the whole gateway",
    });
  }
  // An issuer that is no URL at all already has its problem (superRefine sees refused values).
  if (as.issuer !== undefined && URL.canParse(as.issuer) && new URL(as.issuer).pathname !== "/") {
    ctx.addIssue({
      code: "custom",
      path: ["authorization_server", "issuer"],
      message: "must be an origin (scheme, host, port) without a path",
    });
  }
  if (!config.auth.enabled) {
    ctx.addIssue({
      code: "custom",
      path: ["authorization_server", "enabled"],
      message:
        "the authorization server issues tokens the gateway verifies: it needs auth.enabled: true",
    });
  }
  for (const key of ["issuer", "jwks_url"] as const) {
    if (config.auth.oauth.enabled && config.auth.oauth[key] !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["auth", "oauth", key],
        message: `with authorization_server.enabled the gateway trusts its own issuer and keys: leave auth.oauth.${key} unset (an external authorization server and the embedded one are not combined yet)`,
      });
    }
  }
  const seen = new Set<string>();
  as.users.forEach((user, index) => {
    if (seen.has(user.username)) {
      ctx.addIssue({
        code: "custom",
        path: ["authorization_server", "users", index, "username"],
        message: `duplicate username "${user.username}"`,
      });
    }
    seen.add(user.username);
  });
}

/** Paths the gateway serves itself, which no route may take. */
const RESERVED_PATHS = new Set(["/healthz", "/readyz", "/metrics"]);

function checkRoutes(config: ConfigShape, ctx: z.RefinementCtx): void {
  if (config.upstream === undefined && config.routes.length === 0) {
    ctx.addIssue({
      code: "custom",
      path: ["upstream"],
      message: "nothing to serve: set upstream (one MCP server) or routes (several)",
    });
    return;
  }
  const taken = new Map<string, string>();
  const claim = (path: string, where: (string | number)[], what: string) => {
    const owner = taken.get(path);
    if (owner !== undefined) {
      ctx.addIssue({ code: "custom", path: where, message: `${path} is already ${owner}` });
    } else if (
      RESERVED_PATHS.has(path) ||
      path.startsWith("/.well-known/") ||
      path.startsWith("/oauth/")
    ) {
      ctx.addIssue({
        code: "custom",
        path: where,
        message: `${path} is served by the gateway itself; choose another path`,
      });
    }
    taken.set(path, what);
  };
  const publicUrl = config.auth.oauth.public_url;
  // A public_url that is no URL already has its problem (superRefine sees refused values).
  if (config.upstream !== undefined && (publicUrl === undefined || URL.canParse(publicUrl))) {
    claim(defaultRoutePath(publicUrl), ["upstream"], "the top-level upstream's route");
  }
  config.routes.forEach((route, index) => {
    claim(route.path, ["routes", index, "path"], `the path of routes[${index}]`);
  });
  config.auth.keys.forEach((key, index) => {
    key.routes?.forEach((path, at) => {
      if (!taken.has(path)) {
        ctx.addIssue({
          code: "custom",
          path: ["auth", "keys", index, "routes", at],
          message: `no route has the path ${path}`,
        });
      }
    });
  });
}

/**
 * The URLs the gateway fetches itself whose host is an IP address that `outbound` refuses: known
 * now, rather than at the first fetch. A name (`localhost` too) is checked when it is fetched, on
 * the address it resolves to.
 */
function checkOutbound(config: Config, ctx: z.RefinementCtx): void {
  let allowed: AllowedAddresses;
  try {
    allowed = new AllowedAddresses(config.outbound);
  } catch {
    return; // an entry that is no range already has its problem
  }
  const check = (url: string | undefined, path: (string | number)[]) => {
    if (url === undefined || !URL.canParse(url)) return;
    const address = new URL(url).hostname.replace(/^\[(.*)\]$/, "$1");
    if (isIP(address) === 0 || allowed.allows(address)) return;
    ctx.addIssue({
      code: "custom",
      path,
      message: `${address} is a loopback, private or link-local address, which the gateway does not fetch from: allow it with outbound.allowed_networks (e.g. ["${address}"])`,
    });
  };
  const { oauth } = config.auth;
  if (oauth.enabled && !config.authorization_server.enabled) {
    check(oauth.jwks_url, ["auth", "oauth", "jwks_url"]);
  }
  const login = config.authorization_server.login;
  if (config.authorization_server.enabled && login.type === "oidc") {
    check(login.issuer, ["authorization_server", "login", "issuer"]);
  }
  const tokenUrl = (upstream: object | undefined, path: (string | number)[]) => {
    const auth = upstream !== undefined && "auth" in upstream ? upstream.auth : undefined;
    if (typeof auth === "object" && auth !== null && "token_url" in auth) {
      check(auth.token_url as string, [...path, "upstream", "auth", "token_url"]);
    }
  };
  tokenUrl(config.upstream, []);
  config.routes.forEach((route, index) => {
    tokenUrl(route.upstream, ["routes", index]);
  });
}

/** The path of the top-level `upstream`'s route: that of auth.oauth.public_url, else /mcp. */
export function defaultRoutePath(publicUrl: string | undefined): string {
  return publicUrl === undefined ? "/mcp" : new URL(publicUrl).pathname;
}

type ConfigShape = Pick<Config, "upstream" | "routes" | "auth">;

export type Config = z.output<typeof configSchema>;
export type UpstreamConfig = NonNullable<Config["upstream"]>;
export type RouteConfig = Config["routes"][number];
export type ApiKeyConfig = Config["auth"]["keys"][number];

/**
 * Keys whose change only takes effect after a restart (marked `restartOnly` above), as key
 * paths: `listen`, `limits.max_header_bytes`, `metrics`, ...
 */
export const RESTART_REQUIRED: readonly string[] = restartKeys(
  z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" }) as SchemaWithRestart,
);

interface SchemaWithRestart {
  restart?: boolean;
  properties?: Record<string, SchemaWithRestart>;
}

function restartKeys(schema: SchemaWithRestart, prefix = ""): string[] {
  return Object.entries(schema.properties ?? {}).flatMap(([name, property]) => {
    const key = prefix === "" ? name : `${prefix}.${name}`;
    return property.restart === true ? [key] : restartKeys(property, key);
  });
}

export type OAuthConfig = Config["auth"]["oauth"];

function isOrigin(text: string): boolean {
  try {
    const url = new URL(text);
    return url.origin === text && (url.protocol === "http:" || url.protocol === "https:");
  } catch {
    return false;
  }
}
