/**
 * A request to an MCP route, from arrival to audit line: the exchange is set up, the route's
 * steps run (pipeline/steps.ts lists them), a refusal or failure is answered in one place, and
 * once the response has closed the finished exchange fans out to the audit log, metrics and
 * the span. Every request to a route, refused ones and unknown paths included, ends in exactly
 * one audit line.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import { newAuditRecord, recordPrincipal } from "../audit/record.js";
import { AuthError } from "../auth/principal.js";
import { ERRORS, GatewayError } from "../errors.js";
import { type Exchange, type PipelineContext, runSteps } from "../pipeline/exchange.js";
import type { Generation } from "../runtime/generation.js";
import type { Route } from "../runtime/routes.js";
import { Cancellation } from "../upstream/upstream.js";
import { ClientAbortedError } from "./body.js";
import { newGatewayRequestId } from "./request-id.js";
import { sendAuthError, sendGatewayError } from "./responses.js";

/** nginx's convention for "client closed the request before it was answered". */
const CLIENT_CLOSED_REQUEST = 499;

export async function handleMcpRequest(
  context: PipelineContext,
  generation: Generation,
  route: Route,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  generation.retain();
  context.metrics.requestStarted();
  const exchange: Exchange = {
    req,
    res,
    generation,
    route,
    record: newAuditRecord(
      isoNow(),
      newGatewayRequestId(),
      route.matched ? route.path : undefined,
      headerValue(req, "mcp-session-id"),
      req.method ?? null,
      generation.clientAddress(req.socket.remoteAddress, req.headers["x-forwarded-for"]),
    ),
    // Cancels the upstream request, also when the client leaves before it is forwarded.
    cancellation: new Cancellation(),
    startedAt: performance.now(),
    trace: generation.tracing?.startRequest(req, route.matched ? route.path : undefined),
    body: undefined,
    peek: undefined,
    parseError: undefined,
    principal: undefined,
    streaming: false,
    transformResponse: undefined,
    upstreamAuth: undefined,
    releaseStream: undefined,
  };
  const { record, cancellation } = exchange;
  if (exchange.trace) record.trace_id = exchange.trace.traceId;
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
  if (req.method === "GET" && route.matched) context.holdOpenStream(exchange);

  try {
    const running = runSteps(route.steps, exchange, context);
    if (running !== undefined) await running;
  } catch (error) {
    respondToFailure(context, exchange, error);
  }
  await closed;
  exchange.releaseStream?.();
  finish(context, exchange);
}

/**
 * Holds `exchange` as a long-lived stream: shutdown closes it (`shutting_down`), and so does a
 * reload that drops its upstream (`route_removed`), so that the old generation can close.
 */
export function holdOpenStream(context: PipelineContext, exchange: Exchange): void {
  if (exchange.releaseStream !== undefined) return;
  const { record, cancellation } = exchange;
  const stopOnDrain = context.onDrain(() => {
    record.error = "shutting_down";
    cancellation.cancel(new GatewayError("shutting_down", "the gateway is shutting down"));
  });
  const stopOnDrop = context.onUpstreamDropped(exchange.route.upstream, () => {
    record.error = "route_removed";
    cancellation.cancel(new GatewayError("route_removed", "a reload removed this route"));
  });
  exchange.releaseStream = () => {
    stopOnDrain();
    stopOnDrop();
  };
}

/** The exchange is over: its audit line, metrics and span, then the generation is let go. */
function finish(context: PipelineContext, exchange: Exchange): void {
  const { res, record, startedAt } = exchange;
  if (!res.writableFinished) record.error ??= "client_aborted";
  record.status = res.headersSent ? res.statusCode : CLIENT_CLOSED_REQUEST;
  const elapsedMs = performance.now() - startedAt;
  record.latency_ms = Math.round(elapsedMs * 100) / 100;
  context.audit.write(record);
  if (exchange.streaming) context.metrics.streamClosed();
  context.metrics.requestFinished(exchange.route.path, record, elapsedMs / 1000);
  exchange.trace?.finish(record);
  exchange.generation.release();
}

function respondToFailure(context: PipelineContext, exchange: Exchange, error: unknown): void {
  const { req, res, record, peek } = exchange;
  // Log lines about a request carry the audit line's ids: its JSON-RPC id and the gateway's.
  const ids = { request_id: record.request_id, gateway_request_id: record.gateway_request_id };
  if (error instanceof AuthError) {
    record.auth_type = error.authType;
    record.auth_result = error.result;
    if (error.principal) recordPrincipal(record, error.principal);
    const resourceMetadataUrl = context.resourceMetadataUrl(req, exchange);
    sendAuthError(res, error, {
      ...(resourceMetadataUrl !== undefined && { resourceMetadataUrl }),
      ...(peek && !peek.batch && { jsonRpcId: peek.id }),
    });
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
    if (ERRORS[error.code].audited) record.error = error.code;
    if (error.status >= 500) {
      context.log.warn(
        { ...ids, code: error.code, cause: String(error.cause ?? "") },
        error.message,
      );
    }
    sendGatewayError(res, error, { jsonRpcId: peek && !peek.batch ? peek.id : undefined });
    return;
  }
  record.error = "server_error";
  context.log.error({ ...ids, err: error, method: req.method }, "request failed");
  sendGatewayError(res, new GatewayError("server_error", "internal error"));
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
