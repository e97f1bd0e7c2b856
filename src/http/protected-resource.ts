/**
 * The gateway as an OAuth 2.0 protected resource: its resource identifier, the RFC 9728
 * metadata document that tells MCP clients which authorization server to get tokens from, and
 * where that document lives.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Generation } from "../runtime/generation.js";
import { errorBody, sendJson } from "./responses.js";

/** Where the endpoints are; fixed at startup (changing them needs a restart). */
export interface Endpoints {
  /** The MCP endpoint path: the path of `auth.oauth.public_url`, else `/mcp`. */
  mcpPath: string;
  /** `auth.oauth.metadata_path`. */
  metadataPath: string;
  /** Every path the metadata document is served at. */
  metadataPaths: ReadonlySet<string>;
  /** `auth.oauth.public_url`, when set. */
  publicUrl: string | undefined;
}

/** RFC 9728 §3: the well-known path, plus the path-suffixed form for the MCP endpoint (§3.1). */
export function endpointsOf(publicUrl: string | undefined, metadataPath: string): Endpoints {
  const mcpPath = publicUrl === undefined ? "/mcp" : new URL(publicUrl).pathname;
  const suffixed = `/.well-known/oauth-protected-resource${mcpPath === "/" ? "" : mcpPath}`;
  return { mcpPath, metadataPath, metadataPaths: new Set([metadataPath, suffixed]), publicUrl };
}

/**
 * The resource identifier (RFC 9728 §1.2) a client reached: `public_url` when configured; else,
 * behind a trusted reverse proxy, the scheme and host it forwarded; else the listen address.
 * Request headers are believed only from a trusted proxy, so nobody can make the gateway
 * advertise an authorization server flow for a host of their choosing.
 */
export function resourceUrl(
  req: IncomingMessage,
  generation: Generation,
  endpoints: Endpoints,
  listenOrigin: string,
): string {
  if (endpoints.publicUrl !== undefined) return endpoints.publicUrl;
  if (generation.trustsProxy(req.socket.remoteAddress)) {
    const host = firstValue(req.headers["x-forwarded-host"]);
    const proto = firstValue(req.headers["x-forwarded-proto"]);
    if (host !== undefined && /^[A-Za-z0-9.:[\]-]+$/.test(host)) {
      return `${proto === "https" ? "https" : "http"}://${host}${endpoints.mcpPath}`;
    }
  }
  return `${listenOrigin}${endpoints.mcpPath}`;
}

/** Absolute URL of the metadata document for `resource` (the challenge's `resource_metadata`). */
export function metadataUrl(resource: string, endpoints: Endpoints): string {
  return new URL(endpoints.metadataPath, resource).href;
}

/** RFC 9728 §2 metadata; 404 while OAuth is disabled. */
export function sendResourceMetadata(
  res: ServerResponse,
  generation: Generation,
  resource: string,
): void {
  const oauth = generation.oauth;
  if (!oauth) {
    sendJson(res, 404, errorBody("not_found", "OAuth is not enabled on this gateway"));
    return;
  }
  const document: Record<string, unknown> = {
    resource,
    authorization_servers: [oauth.issuer],
    bearer_methods_supported: ["header"],
  };
  if (oauth.requiredScopes.length > 0) document.scopes_supported = oauth.requiredScopes;
  sendJson(res, 200, JSON.stringify(document));
}

function firstValue(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  return text?.split(",")[0]?.trim() || undefined;
}
