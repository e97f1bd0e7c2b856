/**
 * What a route forwards to. Three kinds implement it: one HTTP server (`http.ts`), a pool of
 * HTTP targets with sealed-session affinity (`pool.ts`), and a stdio server run as a child
 * process per MCP session (`stdio.ts`). An upstream is a component (runtime/usage-pool.ts):
 * the next generation reuses it while its config is unchanged, and it is closed when the last
 * generation using it has closed.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import type { MessageTransform } from "../mcp/rewrite.js";
import type { Component } from "../runtime/usage-pool.js";
import type { TraceContextHeaders } from "../telemetry/tracing.js";

export interface ForwardRequest {
  req: IncomingMessage;
  res: ServerResponse;
  /** The received body (POST), forwarded byte for byte. */
  body: Buffer | undefined;
  /** Cancels the upstream request (the client went away, or shutdown), also before it starts. */
  cancellation: Cancellation;
  /**
   * Request headers set on the upstream request, replacing the client's (lower-case names):
   * a pool's upstream session id, later upstream credentials.
   */
  headers?: Readonly<Record<string, string>>;
  /**
   * Sees the upstream's status and headers before they are sent on; it may rewrite `headers`
   * (a pool seals the session id it hands the client), or throw to refuse the answer: the
   * upstream request is aborted and `forward` rejects with what it threw.
   */
  onResponse?: (statusCode: number, headers: IncomingHttpHeaders) => void;
  /**
   * Rewrites each JSON-RPC message the upstream answers this request with (a JSON body, the
   * events of a stream). Unset, the response's bytes pass untouched.
   */
  transformResponse?: MessageTransform | undefined;
  /**
   * Called once the upstream knows where the request goes (a pool picks a target first):
   * starts the CLIENT span and returns the W3C trace context to send, replacing the client's.
   */
  startSpan?: (target: URL) => TraceContextHeaders | undefined;
}

/** What an upstream reports at a metrics scrape. */
export interface UpstreamStatus {
  /** stdio: the sessions (child processes) running. */
  sessions?: number;
  /** Pools: each target and whether its health check passes. */
  targets?: readonly { url: string; healthy: boolean }[];
}

export interface Upstream extends Component {
  /** For metrics; an upstream with nothing to report has none. */
  status?(): UpstreamStatus;

  /**
   * Sends the request upstream and streams the answer into `res`. Resolves when the response
   * is complete; rejects with GatewayError before response headers, or with the stream error
   * after them (the client's response is then destroyed, never ended as if complete). A
   * cancelled request rejects with the cancellation's reason.
   */
  forward(request: ForwardRequest): Promise<void>;
}

/**
 * Why a request's upstream exchange must stop, remembered: a request cancelled while it was
 * still being authenticated is never dispatched, and one cancelled in flight is aborted.
 */
export class Cancellation {
  #reason: Error | undefined;
  #listener: ((reason: Error) => void) | undefined;

  get reason(): Error | undefined {
    return this.#reason;
  }

  cancel(reason: Error): void {
    if (this.#reason) return;
    this.#reason = reason;
    this.#listener?.(reason);
  }

  /** Sets the one listener, called at once when the cancellation has already happened. */
  onCancel(listener: (reason: Error) => void): void {
    if (this.#reason) listener(this.#reason);
    else this.#listener = listener;
  }
}
