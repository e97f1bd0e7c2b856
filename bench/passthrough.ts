/**
 * The baseline the gateway is measured against: the least a Node reverse proxy can do with
 * the same HTTP client the gateway uses. Every request goes to the upstream endpoint through a
 * keep-alive undici Pool and the response is streamed straight back; no authentication, no
 * audit, no JSON-RPC parsing, no limits. Whatever mcpgw spends above this is the price of its
 * features.
 *
 * Two ways to relay the response: `stream` (the default) with undici's `pool.stream()`, the
 * usual way and the baseline of every target; `dispatch` with a dispatch handler that writes
 * into the response itself, as mcpgw does, which costs less CPU per request.
 *
 * Usage: node dist/bench/passthrough.js http://127.0.0.1:PORT/mcp [stream|dispatch]
 *        (prints {"port":N} once listening on 127.0.0.1)
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { type Dispatcher, Pool } from "undici";
import { announcePort, requireUrlArgument } from "./protocol.js";

const USAGE = "node dist/bench/passthrough.js <upstream MCP endpoint URL> [stream|dispatch]";
const upstream = requireUrlArgument(process.argv[2], USAGE);
const relay = process.argv[3] ?? "stream";
if (relay !== "stream" && relay !== "dispatch") throw new Error(`usage: ${USAGE}`);
const upstreamPath = `${upstream.pathname}${upstream.search}`;
const pool = new Pool(upstream.origin);

/**
 * RFC 9110 §7.6.1: connection-specific fields describe one hop and must not be forwarded.
 * Host is dropped too, so the upstream sees its own authority as with any reverse proxy.
 */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

type Headers = Readonly<Record<string, string | string[] | undefined>>;

function endToEnd(headers: Headers, dropAlso?: string): Record<string, string | string[]> {
  // Fields named in Connection are hop-by-hop as well (RFC 9110 §7.6.1).
  const { connection } = headers;
  const named =
    typeof connection === "string"
      ? connection
          .toLowerCase()
          .split(",")
          .map((token) => token.trim())
      : undefined;
  const forwarded: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || name === dropAlso) continue;
    if (named?.includes(name)) continue;
    forwarded[name] = value;
  }
  return forwarded;
}

function forward(req: IncomingMessage, res: ServerResponse): void {
  const method = req.method ?? "GET";
  pool
    .stream(
      {
        path: upstreamPath,
        method,
        headers: endToEnd(req.headers, "host"),
        body: method === "GET" || method === "HEAD" ? null : req,
      },
      ({ statusCode, headers }) => {
        res.writeHead(statusCode, endToEnd(headers));
        return res;
      },
    )
    .catch((error: unknown) => failed(res, error));
}

function failed(res: ServerResponse, error: unknown): void {
  if (res.headersSent) {
    res.destroy(error instanceof Error ? error : undefined);
    return;
  }
  res.writeHead(502, { "content-type": "text/plain" });
  res.end(`upstream request failed: ${String(error)}\n`);
}

/** Writes the upstream's response into `res` as undici delivers it. */
class Relay implements Dispatcher.DispatchHandler {
  #controller: Dispatcher.DispatchController | undefined;
  #clientGone = false;

  constructor(readonly res: ServerResponse) {
    res.once("close", () => {
      if (res.writableFinished) return;
      this.#clientGone = true;
      this.#controller?.abort(new Error("client closed the connection"));
    });
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#clientGone) controller.abort(new Error("client closed the connection"));
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Headers,
  ): void {
    if (statusCode >= 200) this.res.writeHead(statusCode, endToEnd(headers));
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.res.write(chunk)) return;
    controller.pause();
    this.res.once("drain", () => controller.resume());
  }

  onResponseEnd(): void {
    this.res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    failed(this.res, error);
  }
}

function dispatch(req: IncomingMessage, res: ServerResponse): void {
  const method = req.method ?? "GET";
  pool.dispatch(
    {
      path: upstreamPath,
      method,
      headers: endToEnd(req.headers, "host"),
      body: method === "GET" || method === "HEAD" ? null : req,
    },
    new Relay(res),
  );
}

const server = createServer(relay === "stream" ? forward : dispatch);
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("expected a TCP address");
  announcePort(address.port);
});
