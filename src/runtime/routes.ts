/**
 * The route table of a generation: which MCP endpoint a path is, and where each route's RFC
 * 9728 metadata is served. Compiled from `routes:` (and the top-level `upstream:`, shorthand for
 * one route) on every build, so a reload changes routes like any other setting; the server asks
 * the current generation's table on every request (an exact-path map lookup, whatever the
 * number of routes).
 */

import type { OAuthVerifier } from "../auth/access-tokens.js";
import type { Authenticator } from "../auth/authenticate.js";
import { type Config, defaultRoutePath, type UpstreamConfig } from "../config/schema.js";
import type { ToolHeaderCatalog } from "../mcp/param-headers.js";
import type { Step } from "../pipeline/exchange.js";
import type { Upstream } from "../upstream/upstream.js";

/** The well-known prefix of RFC 9728 §3.1 path-suffixed metadata URLs. */
export const METADATA_PREFIX = "/.well-known/oauth-protected-resource";

/** One route's OAuth resource server: the top-level settings with the route's overrides. */
export interface RouteOAuth {
  verifier: OAuthVerifier;
  issuer: string;
  requiredScopes: readonly string[];
  /** The route's `resource` when configured (or derived from auth.oauth.public_url). */
  publicUrl: string | undefined;
  /** The path of the metadata document its challenges point to. */
  metadataPath: string;
}

export interface Route {
  /** The exact path clients call: the `route` of audit lines, metrics and spans. */
  readonly path: string;
  /** False for the pseudo-route of unknown paths (404, audited). */
  readonly matched: boolean;
  readonly upstream: Upstream;
  readonly authenticator: Authenticator;
  /** Undefined while OAuth is off. */
  readonly oauth: RouteOAuth | undefined;
  /** The route's request pipeline, in order (pipeline/steps.ts builds it). */
  readonly steps: readonly Step[];
  /** The Mcp-Param-* declarations of the tools the route's upstream has listed. */
  readonly toolHeaders: ToolHeaderCatalog;
}

/** A route as the config states it, before anything is built. */
export interface RouteSpec {
  path: string;
  upstream: UpstreamConfig;
  /** The top-level `upstream`: its metadata is also at `auth.oauth.metadata_path`. */
  primary: boolean;
  publicUrl: string | undefined;
  audience: string | undefined;
  requiredScopes: readonly string[];
  /** `protocol.min_version`: older MCP revisions are refused. */
  minVersion: string | undefined;
}

/** Every route of `config`, the top-level `upstream` first. */
export function routeSpecs(config: Config): RouteSpec[] {
  const oauth = config.auth.oauth;
  const specs: RouteSpec[] = [];
  if (config.upstream !== undefined) {
    specs.push({
      path: defaultRoutePath(oauth.public_url),
      upstream: config.upstream,
      primary: true,
      publicUrl: oauth.public_url,
      audience: oauth.audience,
      requiredScopes: oauth.required_scopes,
      minVersion: config.protocol?.min_version,
    });
  }
  for (const route of config.routes) {
    specs.push({
      path: route.path,
      upstream: route.upstream,
      primary: false,
      // A route without its own public_url is served on the same origin as the top-level one.
      publicUrl:
        route.oauth?.public_url ??
        (oauth.public_url === undefined ? undefined : new URL(route.path, oauth.public_url).href),
      audience: route.oauth?.audience ?? oauth.audience,
      requiredScopes: route.oauth?.required_scopes ?? oauth.required_scopes,
      minVersion: route.protocol?.min_version,
    });
  }
  return specs;
}

/** RFC 9728 §3.1: the metadata URL path for a resource whose path is `path`. */
export function suffixedMetadataPath(path: string): string {
  return `${METADATA_PREFIX}${path === "/" ? "" : path}`;
}

export class RouteTable {
  readonly #mcp = new Map<string, Route>();
  readonly #metadata = new Map<string, Route>();
  /** Every route, in config order. */
  readonly routes: readonly Route[];

  constructor(routes: readonly Route[], primaryMetadataPath: string | undefined) {
    this.routes = routes;
    for (const route of routes) {
      this.#mcp.set(route.path, route);
      this.#metadata.set(suffixedMetadataPath(route.path), route);
    }
    const primary = routes[0];
    if (primaryMetadataPath !== undefined && primary !== undefined) {
      this.#metadata.set(primaryMetadataPath, primary);
    }
  }

  /** The route whose MCP endpoint is `path`. */
  mcp(path: string): Route | undefined {
    return this.#mcp.get(path);
  }

  /** The route whose RFC 9728 document is served at `path`. */
  metadata(path: string): Route | undefined {
    return this.#metadata.get(path);
  }
}
