/**
 * The two protocol eras a route serves (contract: Protocol eras). A session-era request
 * (2025-11-25 and before: `initialize`, `Mcp-Session-Id`) passes as it always has. A 2026-07-28
 * request carries its version in `params._meta` and mirrors its method and target in the
 * `Mcp-Method` and `Mcp-Name` headers, so that intermediaries can act on them without the
 * body; the gateway makes sure they agree with the body before anything is forwarded, since
 * an upstream, a load balancer or a later policy step may act on the headers alone.
 */
import { GatewayError } from "../errors.js";
import type { Exchange, Step } from "../pipeline/exchange.js";
import { decodeHeaderValue, paramHeaderMismatch } from "./param-headers.js";

/** The first revision of the stateless era. */
export const FIRST_MODERN_VERSION = "2026-07-28";

/** Revisions are dates: the stateless era is every revision from 2026-07-28 on. */
export function isModernVersion(version: string | undefined): boolean {
  return version !== undefined && version >= FIRST_MODERN_VERSION;
}

/**
 * Pipeline step, after the body is received: records the request's protocol version (the
 * `_meta` envelope's, else the `MCP-Protocol-Version` header's) for the audit line and span.
 */
export const classifyEra: Step = (exchange, context) => {
  const { peek, trace, record } = exchange;
  const header = headerOf(exchange, "mcp-protocol-version");
  const version = peek?.protocolVersion ?? header ?? peek?.requestedVersion;
  if (version !== undefined) record.protocol_version = version;
  if (peek === undefined) return;
  // SEP-414: trace context in `_meta`, for a request that came without a traceparent header.
  if (peek.traceparent !== undefined && trace !== undefined && !exchange.req.headers.traceparent) {
    const meta = { traceparent: peek.traceparent, tracestate: peek.tracestate };
    if (trace.continueFrom(meta)) record.trace_id = trace.traceId;
  }
  // 2026-07-28's stream of notifications: held open, and closed on shutdown like a GET stream.
  if (peek.method === "subscriptions/listen") context.holdOpenStream(exchange);
  // Which arguments the route's tools mirror in Mcp-Param-* headers: read from their listing.
  if (peek.method === "tools/list" && isModernVersion(peek.protocolVersion)) {
    exchange.transformResponse ??= exchange.route.toolHeaders.learn;
  }
};

/**
 * Pipeline step, after authentication: a 2026-07-28 request whose headers disagree with its
 * body is refused with 400 and JSON-RPC -32020 (2026-07-28 Streamable HTTP, Server
 * Validation), and nothing is forwarded. A route with `protocol.min_version` refuses older
 * revisions with -32022, naming the versions it serves.
 */
export function validateEra(minVersion: string | undefined): Step {
  return (exchange) => {
    if (lacksEnvelope(exchange)) {
      throw new GatewayError(
        "invalid_envelope",
        `Invalid params: the MCP-Protocol-Version header names ${headerOf(exchange, "mcp-protocol-version")}, but the request has no _meta["io.modelcontextprotocol/protocolVersion"]`,
      );
    }
    const mismatch = headerMismatch(exchange);
    if (mismatch !== undefined) {
      throw new GatewayError(
        "header_mismatch",
        `Bad Request: the request headers and body disagree: ${mismatch}`,
      );
    }
    if (minVersion === undefined) return;
    const version = exchange.record.protocol_version;
    if (version === undefined || version < minVersion) {
      if (exchange.req.method !== "POST") {
        throw new GatewayError(
          "method_not_allowed",
          `${exchange.req.method} is not served here: this route serves MCP ${minVersion} and later, which use POST only`,
        );
      }
      throw new GatewayError(
        "unsupported_protocol_version",
        `Unsupported protocol version: ${version ?? "none named"}; this route serves ${minVersion} and later`,
        { data: { supported: [minVersion], ...(version !== undefined && { requested: version }) } },
      );
    }
  };
}

/**
 * A request (not initialize) whose header names the stateless era while its body carries no
 * version in `_meta`: invalid params (-32602), as the 2026-07-28 SDKs answer it.
 */
function lacksEnvelope({ peek, req }: Exchange): boolean {
  if (req.method !== "POST" || peek === undefined || peek.batch || !peek.hasId) return false;
  if (peek.method === null || peek.method === "initialize" || peek.protocolVersion !== undefined) {
    return false;
  }
  const header = req.headers["mcp-protocol-version"];
  return typeof header === "string" && isModernVersion(header);
}

/** What disagrees, or undefined for a request that is not 2026-07-28 or whose headers agree. */
function headerMismatch(exchange: Exchange): string | undefined {
  const { peek, req } = exchange;
  if (req.method !== "POST" || peek === undefined || peek.batch || peek.method === null) {
    return undefined;
  }
  const header = headerOf(exchange, "mcp-protocol-version");
  const claim = peek.protocolVersion;
  if (claim === undefined) {
    // The session era's handshake, sent with the new era's header.
    if (!isModernVersion(header) || peek.method !== "initialize") return undefined;
    return `an initialize request (the session-era handshake) was sent with MCP-Protocol-Version ${header}`;
  }
  if (!isModernVersion(claim)) return undefined;
  if (header === undefined) {
    return peek.hasId
      ? `the body names protocol version ${claim} but the MCP-Protocol-Version header is absent`
      : undefined;
  }
  if (header !== claim) {
    return `the body names protocol version ${claim} but the MCP-Protocol-Version header names ${header}`;
  }
  const method = headerOf(exchange, "mcp-method");
  if (method === undefined) {
    return peek.hasId
      ? `the body names method ${peek.method} but the Mcp-Method header is absent`
      : undefined;
  }
  if (method !== peek.method) {
    return `the body names method ${peek.method} but the Mcp-Method header names ${method}`;
  }
  if (peek.name === undefined || !peek.hasId) return undefined;
  const name = headerOf(exchange, "mcp-name");
  if (name === undefined) {
    return `the body names ${peek.name} but the Mcp-Name header is absent`;
  }
  const decoded = decodeHeaderValue(name);
  if (decoded === undefined) return "the Mcp-Name header carries an invalid Base64 value";
  if (decoded !== peek.name) {
    return `the body names ${peek.name} but the Mcp-Name header names ${decoded}`;
  }
  if (peek.tool === undefined) return undefined;
  const declared = exchange.route.toolHeaders.get(peek.tool);
  return declared && paramHeaderMismatch(declared, peek.args, req.headers);
}

/** A header's value (Node's parser has stripped its surrounding whitespace); undefined when absent or repeated. */
function headerOf(exchange: Exchange, name: string): string | undefined {
  const value = exchange.req.headers[name];
  return typeof value === "string" ? value : undefined;
}
