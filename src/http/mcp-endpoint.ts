/**
 * The MCP endpoint's request pipeline: receive -> authenticate -> proxy -> audit.
 * Every request to the endpoint, refused ones included, ends in exactly one audit line.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import { type AuditRecord, newAuditRecord } from "../audit/record.js";
import type { AuditLog } from "../audit/writer.js";
import { AuthError, type Principal } from "../auth/principal.js";
import { GatewayError } from "../errors.js";
import type { Logger } from "../log.js";
import { type JsonRpcParseError, type JsonRpcPeek, peekJsonRpc } from "../mcp/jsonrpc.js";
import type { Generation } from "../runtime/generation.js";
import type { GatewayMetrics } from "../telemetry/metrics.js";
import type { Tracing } from "../telemetry/tracing.js";
import { ClientAbortedError, readBody } from "./body.js";
import { allowOrigin, checkOrigin } from "./cors.js";
import { Cancellation } from "./proxy.js";
import { newGatewayRequestId } from "./request-id.js";
import { sendAuthError, sendGatewayError } from "./responses.js";

/** What the endpoint needs of the running gateway. */
export interface EndpointContext {
  /** The current generation; read once per request. */
  readonly generation: Generation;
  readonly audit: AuditLog;
  readonly log: Logger;
  readonly draining: boolean;
  /** Calls `listener` when shutdown starts; returns the function that unregisters it. */
  onDrain(listener: () => void): () => void;
  /** The challenge's `resource_metadata` (RFC 9728 §5.1); undefined while OAuth is off. */
  resourceMetadataUrl(req: IncomingMessage, generation: Generation): string | undefined;
  readonly metrics: GatewayMetrics;
  /** Undefined while tracing is off. */
  readonly tracing: Tracing | undefined;
  /** The MCP endpoint's path, the `route` of metrics and spans. */
  readonly route: string;
}

const ALLOWED_METHODS = "GET, POST, DELETE";

/** nginx's convention for "client closed the request before it was answered". */
const CLIENT_CLOSED_REQUEST = 499;

export async function handleMcpRequest(
  context: EndpointContext,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const generation = context.generation;
  generation.retain();
  const { metrics } = context;
  metrics.requestStarted();
  const startedAt = performance.now();
  const record = newAuditRecord(
    isoNow(),
    newGatewayRequestId(),
    headerValue(req, "mcp-session-id"),
    req.method ?? null,
    generation.clientAddress(req.socket.remoteAddress, req.headers["x-forwarded-for"]),
  );
  const tracing = context.tracing?.startRequest(req, context.route);
  if (tracing) record.trace_id = tracing.traceId;
  // Cancels the upstream request, also when the client leaves before it is forwarded.
  const cancellation = new Cancellation();
  // The audit line is written once the response is closed *and* the pipeline has settled, so
  // that it knows how the exchange ended (complete, client gone, upstream failed).
  const closed = new Promise<void>((resolve) =>
    res.once("close", () => {
      if (!res.writableFinished) {
        cancellation.cancel(new ClientAbortedError("the client closed the connection"));
      }
      resolve();
    }),
  );
  if (context.draining) res.setHeader("connection", "close");
  // A standalone GET stream never ends by itself; shutdown closes it and the client reconnects
  // elsewhere (MCP transport: the client may resume a dropped stream).
  const stopOnDrain =
    req.method === "GET"
      ? context.onDrain(() => {
          record.error = "shutting_down";
          cancellation.cancel(new GatewayError("shutting_down", "the gateway is shutting down"));
        })
      : undefined;

  let peek: JsonRpcPeek | undefined;
  let streaming = false;
  try {
    const origin = checkOrigin(req, generation);
    if (origin === "refused") {
      throw new GatewayError(
        "origin_not_allowed",
        `Origin ${req.headers.origin} is not allowed (cors.allowed_origins)`,
      );
    }
    if (origin === "allowed") allowOrigin(req, res);
    if (req.method !== "POST" && req.method !== "GET" && req.method !== "DELETE") {
      throw new GatewayError(
        "method_not_allowed",
        `${req.method} is not allowed on the MCP endpoint`,
      );
    }

    let body: Buffer | undefined;
    let parseError: JsonRpcParseError | undefined;
    if (req.method === "POST") {
      record.method = null;
      body = await readBody(req, generation.config.limits.max_body_bytes);
      try {
        peek = peekJsonRpc(body);
        record.method = peek.method;
        record.request_id = peek.id;
        if (peek.tool !== undefined) record.tool = peek.tool;
      } catch (error) {
        // Answered after authentication, so that only an authenticated client learns about it.
        parseError = error as JsonRpcParseError;
      }
    }

    const authenticated = generation.authenticator.authenticate(req.headers.authorization);
    const principal = authenticated instanceof Promise ? await authenticated : authenticated;
    record.auth_result = "ok";
    recordPrincipal(record, principal);

    if (parseError) {
      throw new GatewayError(
        "parse_error",
        `request body is not valid JSON: ${parseError.message}`,
      );
    }
    if (generation.config.audit.on_error === "fail_closed" && !context.audit.healthy) {
      throw new GatewayError(
        "audit_unavailable",
        "the audit log cannot be written; requests are refused (audit.on_error: fail_closed)",
        { cause: `${context.audit.path}: ${context.audit.failure ?? "write failed"}` },
      );
    }

    record.action = "allow";
    await generation.upstream.forward({
      req,
      res,
      body,
      cancellation,
      traceContext: tracing?.startUpstream(req.method, generation.upstream.url),
      onResponse: (status, headers) => {
        tracing?.upstreamResponded(status);
        metrics.upstreamResponded(context.route, (performance.now() - startedAt) / 1000);
        const sessionId = headers["mcp-session-id"];
        if (record.session_id === null && typeof sessionId === "string")
          record.session_id = sessionId;
        if (String(headers["content-type"]).startsWith("text/event-stream")) {
          metrics.streamOpened();
          streaming = true;
        }
      },
    });
  } catch (error) {
    respondToFailure(context, generation, req, res, error, record, peek);
  }
  await closed;
  stopOnDrain?.();
  if (!res.writableFinished) record.error ??= "client_aborted";
  record.status = res.headersSent ? res.statusCode : CLIENT_CLOSED_REQUEST;
  const elapsedMs = performance.now() - startedAt;
  record.latency_ms = Math.round(elapsedMs * 100) / 100;
  context.audit.write(record);
  if (streaming) metrics.streamClosed();
  metrics.requestFinished(context.route, record, elapsedMs / 1000);
  tracing?.finish(record);
  generation.release();
}

function respondToFailure(
  context: EndpointContext,
  generation: Generation,
  req: IncomingMessage,
  res: ServerResponse,
  error: unknown,
  record: AuditRecord,
  peek: JsonRpcPeek | undefined,
): void {
  // Log lines about a request carry the audit line's ids: its JSON-RPC id and the gateway's.
  const ids = { request_id: record.request_id, gateway_request_id: record.gateway_request_id };
  if (error instanceof AuthError) {
    record.auth_type = error.authType;
    record.auth_result = error.result;
    if (error.principal) recordPrincipal(record, error.principal);
    const resourceMetadataUrl = context.resourceMetadataUrl(req, generation);
    sendAuthError(res, error, resourceMetadataUrl === undefined ? {} : { resourceMetadataUrl });
    return;
  }
  if (error instanceof ClientAbortedError) {
    record.error = "client_aborted";
    return;
  }
  if (res.headersSent || res.destroyed) {
    // The relay destroys the response with the upstream's error; a client that went away, or
    // a cancellation by the gateway, leaves it closed without one.
    const upstreamError = res.errored;
    if (upstreamError) {
      // Abort the client's response rather than end it as if it were complete (contract:
      // Limits and failure behaviour).
      record.error = "upstream_aborted";
      context.log.warn({ ...ids, err: upstreamError }, "upstream response aborted mid-stream");
    } else {
      record.error ??= "client_aborted";
    }
    res.destroy();
    return;
  }
  if (error instanceof GatewayError) {
    if (error.code === "origin_not_allowed") record.error = error.code;
    if (error.status >= 500) {
      record.error = error.code;
      context.log.warn(
        { ...ids, code: error.code, cause: String(error.cause ?? "") },
        error.message,
      );
    }
    const headers: Record<string, string> = {};
    if (error.code === "method_not_allowed") headers.allow = ALLOWED_METHODS;
    // The body was not read to its end; the connection cannot carry another request.
    if (error.code === "body_too_large") headers.connection = "close";
    sendGatewayError(res, error, { jsonRpcId: peek && !peek.batch ? peek.id : undefined, headers });
    return;
  }
  record.error = "server_error";
  context.log.error({ ...ids, err: error, method: req.method }, "request failed");
  sendGatewayError(res, new GatewayError("server_error", "internal error"));
}

function recordPrincipal(record: AuditRecord, principal: Principal): void {
  record.auth_type = principal.type;
  if (principal.keyId !== undefined) record.key_id = principal.keyId;
  if (principal.sub !== undefined) record.sub = principal.sub;
  if (principal.oauthClientId !== undefined) record.oauth_client_id = principal.oauthClientId;
  if (principal.scope !== "") record.scopes = principal.scope;
}

/**
 * The current time in ISO 8601, formatted once per millisecond: under load many requests start
 * in the same millisecond, and formatting a Date is a measurable part of a request's cost.
 */
let lastMs = 0;
let lastIso = "";
function isoNow(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastIso = new Date(now).toISOString();
  }
  return lastIso;
}

function headerValue(req: IncomingMessage, name: string): string | null {
  const value = req.headers[name];
  return typeof value === "string" ? value : null;
}
