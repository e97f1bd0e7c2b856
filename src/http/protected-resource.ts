/**
 * The gateway as an OAuth 2.0 protected resource: its resource identifier, the RFC 9728
 * metadata document that tells MCP clients which authorization server to get tokens from, and
 * where that document lives.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Generation } from "../runtime/generation.js";
import type { Route } from "../runtime/routes.js";
import { errorBody, sendJson } from "./responses.js";

/**
 * The resource identifier (RFC 9728 §1.2) of a route: its public URL when configured; else,
 * behind a trusted reverse proxy, the scheme and host it forwarded; else the listen address.
 * Request headers are believed only from a trusted proxy, so nobody can make the gateway
 * advertise an authorization server flow for a host of their choosing.
 */
export function resourceUrl(
  req: IncomingMessage,
  generation: Generation,
  route: Route,
  listenOrigin: string,
): string {
  const configured = route.oauth?.publicUrl;
  if (configured !== undefined) return configured;
  if (generation.trustsProxy(req.socket.remoteAddress)) {
    const host = firstValue(req.headers["x-forwarded-host"]);
    const proto = firstValue(req.headers["x-forwarded-proto"]);
    if (host !== undefined && /^[A-Za-z0-9.:[\]-]+$/.test(host)) {
      return `${proto === "https" ? "https" : "http"}://${host}${route.path}`;
    }
  }
  return `${listenOrigin}${route.path}`;
}

/** Absolute URL of the route's metadata document (the challenge's `resource_metadata`). */
export function metadataUrl(resource: string, metadataPath: string): string {
  return new URL(metadataPath, resource).href;
}

/** RFC 9728 §2 metadata of `route`; 404 while OAuth is disabled. */
export function sendResourceMetadata(res: ServerResponse, route: Route, resource: string): void {
  const oauth = route.oauth;
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
