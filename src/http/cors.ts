/**
 * CORS for browser-based MCP clients (MCP Inspector), and the Origin check the MCP transport
 * requires against DNS rebinding: a request that carries an Origin the config does not allow
 * is refused with 403. Requests without Origin (every non-browser client) are not affected.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { isIP } from "node:net";
import { GatewayError } from "../errors.js";
import type { Step } from "../pipeline/exchange.js";
import type { Generation } from "../runtime/generation.js";

const ALLOWED_HEADERS =
  "Authorization, Content-Type, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID";
const EXPOSED_HEADERS = "WWW-Authenticate, Mcp-Session-Id, MCP-Protocol-Version";

export type OriginCheck = "none" | "allowed" | "refused";

export function checkOrigin(req: IncomingMessage, generation: Generation): OriginCheck {
  const origin = req.headers.origin;
  if (origin === undefined) return "none";
  const allowed = generation.allowedOrigins;
  if (allowed.has("*") || allowed.has(origin)) return "allowed";
  return isOwnOrigin(origin, req.headers.host, generation) ? "none" : "refused";
}

/**
 * A browser page served from the gateway's own origin (same-origin requests carry Origin too).
 * Comparing Origin with Host alone proves nothing against DNS rebinding, where both name the
 * attacker's domain; so the host must also be one the gateway knows as its own: a loopback
 * address or `localhost`, or the host of a configured public URL.
 */
function isOwnOrigin(origin: string, host: string | undefined, generation: Generation): boolean {
  if (host === undefined || (origin !== `http://${host}` && origin !== `https://${host}`)) {
    return false;
  }
  return generation.ownHosts.has(host.toLowerCase()) || isLoopbackHost(host);
}

function isLoopbackHost(host: string): boolean {
  const name = host.startsWith("[")
    ? host.slice(1, host.indexOf("]"))
    : (host.split(":", 1)[0] ?? "");
  return name === "localhost" || name === "::1" || (isIP(name) === 4 && name.startsWith("127."));
}

/**
 * Refuses (throws 403 origin_not_allowed) a browser Origin the config does not allow, and
 * adds the CORS headers for one it allows. For every endpoint but the preflight.
 */
export function admitOrigin(req: IncomingMessage, res: ServerResponse, generation: Generation) {
  const origin = checkOrigin(req, generation);
  if (origin === "refused") {
    throw new GatewayError(
      "origin_not_allowed",
      `Origin ${req.headers.origin} is not allowed (cors.allowed_origins)`,
    );
  }
  if (origin === "allowed") allowOrigin(req, res);
}

/** Pipeline step: admitOrigin for the MCP route. */
export const refuseForeignOrigin: Step = ({ req, res, generation }) =>
  admitOrigin(req, res, generation);

/** Adds the headers a browser needs to read an allowed cross-origin response. */
export function allowOrigin(req: IncomingMessage, res: ServerResponse): void {
  res.setHeader("access-control-allow-origin", req.headers.origin as string);
  res.setHeader("access-control-expose-headers", EXPOSED_HEADERS);
  res.setHeader("vary", "Origin");
}

/** Answers a CORS preflight (OPTIONS) for `methods`. */
export function answerPreflight(
  req: IncomingMessage,
  res: ServerResponse,
  check: OriginCheck,
  methods: string,
): void {
  if (check === "refused") {
    res.writeHead(403, { vary: "Origin", "content-length": 0 }).end();
    return;
  }
  const headers: Record<string, string | number> = {
    allow: `${methods}, OPTIONS`,
    "content-length": 0,
  };
  if (check === "allowed") {
    Object.assign(headers, {
      "access-control-allow-origin": req.headers.origin as string,
      "access-control-allow-methods": methods,
      "access-control-allow-headers": ALLOWED_HEADERS,
      "access-control-max-age": 600,
      vary: "Origin",
    });
  }
  res.writeHead(204, headers).end();
}
