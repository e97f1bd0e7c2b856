/**
 * The listening HTTP server: strict parsing, limits, the gateway's own endpoints (health,
 * readiness, metrics), and everything else to the current generation's route table.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Config } from "../config/schema.js";
import { errorBody, sendJson } from "./responses.js";

export interface Routes {
  /** MCP routes, their RFC 9728 documents and unknown paths: the generation's route table. */
  dispatch: (req: IncomingMessage, res: ServerResponse, path: string) => void;
  /** Why the gateway should get no traffic now (`shutting_down`, ...), or undefined when ready. */
  notReady: () => string | undefined;
  /** Present when metrics are served on this listener. */
  metrics?: (req: IncomingMessage, res: ServerResponse) => void;
}

/**
 * Node's parser is strict by default (no `insecureHTTPParser`): Content-Length together with
 * Transfer-Encoding, a duplicate Content-Length or a malformed header line is a parse error,
 * answered 400 in `clientError` before any handler runs, so nothing is forwarded.
 */
export function createGatewayServer(limits: Config["limits"], routes: Routes): Server {
  const server = createServer(
    {
      maxHeaderSize: limits.max_header_bytes,
      headersTimeout: limits.headers_timeout,
      requestTimeout: limits.request_timeout,
      // How often expired header/request timers are checked; Node's default of 30s would let a
      // slowloris client hold a connection far past headers_timeout.
      connectionsCheckingInterval: Math.min(1_000, limits.headers_timeout),
      keepAliveTimeout: 5_000,
    },
    (req, res) => route(routes, req, res),
  );
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable || socket.writableEnded) {
      socket.destroy();
      return;
    }
    const [status, reason] =
      error.code === "HPE_HEADER_OVERFLOW"
        ? [431, "Request Header Fields Too Large"]
        : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? [408, "Request Timeout"]
          : [400, "Bad Request"];
    const body = errorBody(
      "bad_request",
      status === 400 ? "malformed HTTP request" : reason.toLowerCase(),
    );
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  });
  return server;
}

function route(routes: Routes, req: IncomingMessage, res: ServerResponse): void {
  const url = req.url ?? "/";
  const queryAt = url.indexOf("?");
  const path = queryAt === -1 ? url : url.slice(0, queryAt);
  if (req.method === "GET" || req.method === "HEAD") {
    if (path === "/healthz") {
      sendJson(res, 200, '{"status":"ok"}');
      return;
    }
    if (path === "/metrics" && routes.metrics) {
      routes.metrics(req, res);
      return;
    }
    if (path === "/readyz") {
      const reason = routes.notReady();
      if (reason === undefined) sendJson(res, 200, '{"status":"ready"}');
      else sendJson(res, 503, JSON.stringify({ status: "not_ready", reason }));
      return;
    }
  }
  routes.dispatch(req, res, path);
}
