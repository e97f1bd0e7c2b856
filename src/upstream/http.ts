/**
 * An HTTP upstream: forwards one MCP request over a keep-alive undici pool and streams the
 * response back. SSE responses are written event by event as they arrive: the response is
 * piped chunk by chunk into the socket, headers are flushed at once, nothing is compressed.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { type Dispatcher, Pool, errors as undiciErrors } from "undici";
import { GatewayError } from "../errors.js";
import { type BodyRewriter, bodyRewriter, type MessageTransform } from "../mcp/rewrite.js";
import type { TraceContextHeaders } from "../telemetry/tracing.js";
import type { Cancellation, ForwardRequest, Upstream } from "./upstream.js";

/** RFC 9110 §7.6.1 hop-by-hop fields, plus fields the gateway sets or must never forward. */
const REQUEST_HEADERS_DROPPED = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
  "content-length",
  "expect",
  // The client's credentials are for the gateway only (contract: Authentication).
  "authorization",
  "cookie",
  "x-forwarded-proto",
  "x-forwarded-host",
]);

const RESPONSE_HEADERS_DROPPED = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

export interface HttpUpstreamConfig {
  url: string;
  /** Milliseconds until the response headers; streams are not cut by it. */
  timeout: number;
}

/** One MCP server over Streamable HTTP. */
export class HttpUpstream implements Upstream {
  readonly url: URL;
  /** `url.pathname`, read once: URL getters are not free on every request. */
  readonly #path: string;
  readonly #pool: Pool;

  constructor(config: HttpUpstreamConfig) {
    this.url = new URL(config.url);
    this.#path = this.url.pathname;
    this.#pool = new Pool(this.url.origin, {
      // Until response headers only: an SSE stream may stay open for hours.
      headersTimeout: config.timeout,
      bodyTimeout: 0,
      connectTimeout: Math.min(config.timeout, 10_000),
      keepAliveTimeout: 30_000,
    });
  }

  /** Lets requests in flight finish, then closes the pool's connections. */
  close(): Promise<void> {
    return this.#pool.close();
  }

  forward(request: ForwardRequest): Promise<void> {
    const { req, cancellation } = request;
    if (cancellation.reason) return Promise.reject(cancellation.reason);
    const search = req.url?.includes("?") ? req.url.slice(req.url.indexOf("?")) : "";
    return new Promise((resolve, reject) => {
      this.#pool.dispatch(
        {
          method: req.method as "GET" | "POST" | "DELETE",
          path: this.#path + search,
          headers: forwardedRequestHeaders(req, request.startSpan?.(this.url), request.headers),
          body: request.body ?? null,
        },
        new ResponseRelay(request, resolve, reject),
      );
    });
  }
}

/**
 * Relays one upstream response into the client's response, through undici's dispatch handler
 * interface. `pool.stream()` does the same through a general-purpose Writable adapter (an async
 * resource, a promise and `stream.finished` with its listeners on every request); relaying
 * directly took about 8 µs of CPU off each request here (docs/benchmarks.md).
 */
class ResponseRelay implements Dispatcher.DispatchHandler {
  readonly #res: ServerResponse;
  readonly #onResponse: ForwardRequest["onResponse"];
  readonly #resolve: () => void;
  readonly #reject: (error: unknown) => void;
  readonly #cancellation: Cancellation;
  readonly #transform: MessageTransform | undefined;
  /** Set while the response's messages are rewritten (a transform, and a JSON-RPC body). */
  #rewriter: BodyRewriter | undefined;
  /** The status and headers of a body rewritten whole, sent with it and its new length. */
  #held: { statusCode: number; headers: Record<string, string | string[]> } | undefined;
  #controller: Dispatcher.DispatchController | undefined;
  #settled = false;

  constructor(
    { res, cancellation, onResponse, transformResponse }: ForwardRequest,
    resolve: () => void,
    reject: (error: unknown) => void,
  ) {
    this.#res = res;
    this.#onResponse = onResponse;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#cancellation = cancellation;
    this.#transform = transformResponse;
    cancellation.onCancel((reason) => {
      // Before undici starts the request, onRequestStart sees the reason.
      if (!this.#settled) this.#controller?.abort(reason);
    });
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    const reason = this.#cancellation.reason;
    if (reason) controller.abort(reason);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
  ): void {
    // 1xx informational responses are the upstream's business; the client gets the final one.
    if (statusCode < 200) return;
    try {
      this.#onResponse?.(statusCode, headers);
    } catch (error) {
      // The exchange refuses this answer (the upstream refused the gateway's credentials):
      // nothing of it reaches the client, which gets the error instead.
      this.#settled = true;
      controller.abort(error as Error);
      this.#reject(error);
      return;
    }
    const isEventStream = String(headers["content-type"] ?? "").startsWith("text/event-stream");
    const forwarded = forwardedResponseHeaders(headers, isEventStream);
    if (this.#transform) {
      this.#rewriter = bodyRewriter(headers["content-type"], this.#transform);
      // The rewritten body has a length of its own: known at the end of a JSON body (sent
      // then, with a Content-Length), never for a stream (chunked).
      if (this.#rewriter) delete forwarded["content-length"];
      if (this.#rewriter?.whole) {
        this.#held = { statusCode, headers: forwarded };
        return;
      }
    }
    this.#res.writeHead(statusCode, forwarded);
    // Send the status line now: an SSE client is waiting for it before the first event.
    if (isEventStream) this.#res.flushHeaders();
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#settled) return;
    if (this.#rewriter) {
      const rewritten = this.#rewriter.write(chunk);
      if (rewritten === "" || this.#res.write(rewritten)) return;
    } else if (this.#res.write(chunk)) return;
    // The client reads slower than the upstream sends: stop reading until the socket drains.
    controller.pause();
    this.#res.once("drain", () => controller.resume());
  }

  onResponseEnd(): void {
    if (this.#settled) return;
    this.#settled = true;
    if (this.#held) {
      const body = (this.#rewriter as BodyRewriter).end();
      this.#held.headers["content-length"] = String(Buffer.byteLength(body));
      this.#res.writeHead(this.#held.statusCode, this.#held.headers);
      this.#res.end(body);
    } else if (this.#rewriter) this.#res.end(this.#rewriter.end());
    else this.#res.end();
    this.#resolve();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.#settled) return;
    this.#settled = true;
    if (error === this.#cancellation.reason) {
      // The gateway ended the exchange on purpose: the response is cut off without an error.
      if (this.#res.headersSent) this.#res.destroy();
      this.#reject(error);
    } else if (this.#res.headersSent) {
      this.#res.destroy(error);
      this.#reject(error);
    } else {
      this.#reject(toGatewayError(error));
    }
  }
}

function forwardedRequestHeaders(
  req: IncomingMessage,
  traceContext: TraceContextHeaders | undefined,
  replaced: Readonly<Record<string, string>> | undefined,
): Record<string, string> {
  const incoming = req.headers;
  const dropped = connectionListed(incoming.connection);
  const headers: Record<string, string> = {};
  for (const name in incoming) {
    if (REQUEST_HEADERS_DROPPED.has(name) || dropped?.has(name)) continue;
    // With tracing on, the upstream sees the gateway's trace context, not the client's.
    if (traceContext && (name === "traceparent" || name === "tracestate")) continue;
    const value = incoming[name];
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  const clientAddress = req.socket.remoteAddress ?? "";
  const priorFor = incoming["x-forwarded-for"];
  headers["x-forwarded-for"] = priorFor ? `${priorFor}, ${clientAddress}` : clientAddress;
  headers["x-forwarded-proto"] = "encrypted" in req.socket ? "https" : "http";
  if (incoming.host) headers["x-forwarded-host"] = incoming.host;
  if (traceContext) {
    headers.traceparent = traceContext.traceparent;
    if (traceContext.tracestate !== undefined) headers.tracestate = traceContext.tracestate;
  }
  if (replaced) Object.assign(headers, replaced);
  return headers;
}

function forwardedResponseHeaders(
  upstream: IncomingHttpHeaders,
  isEventStream: boolean,
): Record<string, string | string[]> {
  const dropped = connectionListed(upstream.connection);
  const headers: Record<string, string | string[]> = {};
  for (const name in upstream) {
    if (RESPONSE_HEADERS_DROPPED.has(name) || dropped?.has(name)) continue;
    const value = upstream[name];
    if (value !== undefined) headers[name] = value;
  }
  // Tells nginx and similar proxies in front of the gateway not to buffer the stream.
  if (isEventStream) headers["x-accel-buffering"] = "no";
  return headers;
}

/** RFC 9110 §7.6.1: fields named in Connection are hop-by-hop too. */
function connectionListed(connection: string | string[] | undefined): Set<string> | undefined {
  // The common values name no other field; skip building a set on every request.
  if (connection === undefined || connection === "keep-alive" || connection === "close")
    return undefined;
  const list = Array.isArray(connection) ? connection.join(",") : connection;
  return new Set(list.split(",").map((name) => name.trim().toLowerCase()));
}

function toGatewayError(error: unknown): GatewayError {
  if (
    error instanceof undiciErrors.HeadersTimeoutError ||
    error instanceof undiciErrors.ConnectTimeoutError
  ) {
    return new GatewayError("upstream_timeout", "the upstream MCP server did not answer in time", {
      cause: error,
    });
  }
  return new GatewayError("upstream_unreachable", "the upstream MCP server could not be reached", {
    cause: error,
  });
}
