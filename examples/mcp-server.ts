/**
 * A small upstream MCP server for trying out and testing mcpgw.
 *
 * It speaks stateful Streamable HTTP on `/mcp` using the official SDK, on plain `node:http` so the
 * HTTP handling stays visible. Besides trivial tools it offers `countdown` (progress notifications
 * streamed over SSE) and `inspect-request` (the headers that reached this server), which together
 * show what a proxy in front of it streams through and forwards.
 *
 * Run directly: `node dist/examples/mcp-server.js` (listens on 127.0.0.1, port $PORT or 3001).
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

export interface ExampleServerOptions {
  /** Interface to bind; loopback unless you deliberately expose this unauthenticated server. */
  host?: string;
  /** 0 picks a free port; read the chosen one from {@link ExampleServer.port}. */
  port?: number;
  /** Answer POSTs with a single JSON body instead of an SSE stream. */
  jsonResponse?: boolean;
  /** Sees every incoming request before it is handled, e.g. to assert forwarded headers. */
  onRequest?: (req: IncomingMessage) => void;
  /**
   * Makes it a protected resource: a request whose `Authorization: Bearer` token this does not
   * accept gets 401 with an RFC 6750 challenge.
   */
  verifyToken?: (token: string) => boolean | Promise<boolean>;
}

export interface ExampleServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

const MCP_PATH = "/mcp";
// Same bound the SDK applies when it reads a body itself.
const MAX_BODY_BYTES = 4 * 1024 * 1024;

export async function startExampleServer(opts: ExampleServerOptions = {}): Promise<ExampleServer> {
  const { host = "127.0.0.1", port = 0, jsonResponse = false, onRequest, verifyToken } = opts;
  const sessions = new Map<string, StreamableHTTPServerTransport>();

  async function openSession(req: IncomingMessage, res: ServerResponse, initialize: unknown) {
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: randomUUID,
      enableJsonResponse: jsonResponse,
      onsessioninitialized: (sessionId) => {
        sessions.set(sessionId, transport);
      },
    });
    // Fires on DELETE from the client as well as on close(), so the map never holds dead sessions.
    transport.onclose = () => {
      if (transport.sessionId !== undefined) sessions.delete(transport.sessionId);
    };
    const mcp = createMcpServer();
    await mcp.connect(transport);
    await transport.handleRequest(req, res, initialize);
    // The transport refused the initialize (wrong Accept or Content-Type, ...): nothing will ever
    // address this session again.
    if (transport.sessionId === undefined) await mcp.close();
  }

  async function handleMcp(req: IncomingMessage, res: ServerResponse) {
    const sessionId = req.headers["mcp-session-id"];
    if (typeof sessionId === "string") {
      const transport = sessions.get(sessionId);
      // 404 (not 400) tells a client its session is gone and it should initialize again.
      if (transport === undefined) return sendJsonRpcError(res, 404, -32001, "Session not found");
      return transport.handleRequest(req, res);
    }
    if (req.method !== "POST") {
      return sendJsonRpcError(res, 400, -32000, "Bad Request: Mcp-Session-Id header is required");
    }
    // Only an initialize may arrive without a session, and telling it apart needs the body.
    const body = await readJsonBody(req);
    if (!body.ok) return sendJsonRpcError(res, body.status, body.code, body.message);
    if (!isInitializeRequest(body.value)) return serveStateless(req, res, body.value);
    return openSession(req, res, body.value);
  }

  /**
   * A request without a session is answered by a throwaway server in the SDK's stateless mode,
   * so that a single curl can list or call tools; SDK clients initialize and get a session.
   */
  async function serveStateless(req: IncomingMessage, res: ServerResponse, message: unknown) {
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse: jsonResponse,
    });
    const mcp = createMcpServer();
    res.once("close", () => void mcp.close());
    await mcp.connect(transport);
    await transport.handleRequest(req, res, message);
  }

  async function route(req: IncomingMessage, res: ServerResponse) {
    onRequest?.(req);
    const { pathname } = new URL(req.url ?? "/", "http://localhost");
    if (pathname !== MCP_PATH) {
      return sendJson(res, 404, { error: "not_found", message: `Only ${MCP_PATH} is served here` });
    }
    if (req.method !== "GET" && req.method !== "POST" && req.method !== "DELETE") {
      res.setHeader("Allow", "GET, POST, DELETE");
      return sendJsonRpcError(res, 405, -32000, "Method not allowed.");
    }
    if (verifyToken) {
      const header = req.headers.authorization ?? "";
      const token = /^Bearer (\S+)$/i.exec(header)?.[1];
      if (token === undefined || !(await verifyToken(token))) {
        res.setHeader("WWW-Authenticate", 'Bearer error="invalid_token"');
        return sendJson(res, 401, { error: "invalid_token" });
      }
    }
    return handleMcp(req, res);
  }

  const httpServer = createServer((req, res) => {
    route(req, res).catch((error: unknown) => {
      console.error("example MCP server: request failed:", error);
      if (!res.headersSent) sendJsonRpcError(res, 500, -32603, "Internal error");
      else res.destroy();
    });
  });

  await new Promise<void>((resolve, reject) => {
    httpServer.once("error", reject);
    httpServer.listen(port, host, () => {
      httpServer.off("error", reject);
      resolve();
    });
  });

  // Built from the socket's actual address rather than `host`, so the URL cannot claim a bind
  // that did not happen.
  const address = httpServer.address() as AddressInfo;
  const urlHost = address.family === "IPv6" ? `[${address.address}]` : address.address;

  let closing: Promise<void> | undefined;
  return {
    url: `http://${urlHost}:${address.port}${MCP_PATH}`,
    port: address.port,
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve, reject) => {
          httpServer.close((error) => (error ? reject(error) : resolve()));
        });
        // Closing a transport ends its open SSE streams and aborts in-flight tool calls.
        await Promise.all([...sessions.values()].map((transport) => transport.close()));
        httpServer.closeAllConnections();
        await stopped;
      })();
      return closing;
    },
  };
}

/** A fresh MCP server per session: an SDK server instance serves exactly one transport. */
function createMcpServer(): McpServer {
  const mcp = new McpServer({ name: "mcpgw-example-server", version: "0.1.0" });

  mcp.registerTool(
    "echo",
    {
      description: "Returns the given message unchanged.",
      inputSchema: { message: z.string() },
    },
    ({ message }) => ({ content: [{ type: "text", text: message }] }),
  );

  mcp.registerTool(
    "add",
    {
      description: "Adds two numbers.",
      inputSchema: { a: z.number(), b: z.number() },
    },
    ({ a, b }) => ({ content: [{ type: "text", text: String(a + b) }] }),
  );

  mcp.registerTool(
    "countdown",
    {
      description:
        "Counts down, sending one progress notification per step (when the caller asked for " +
        "progress), then returns 'done'. Useful to check that a proxy streams instead of buffering.",
      inputSchema: {
        steps: z.number().int().min(1).max(50),
        interval_ms: z.number().int().min(0).max(5000).default(50),
      },
    },
    async ({ steps, interval_ms }, extra) => {
      const progressToken = extra._meta?.progressToken;
      for (let step = 1; step <= steps; step++) {
        // Aborted when the client cancels the call or the session closes.
        if (step > 1) await delay(interval_ms, undefined, { signal: extra.signal });
        if (progressToken === undefined) continue;
        await extra.sendNotification({
          method: "notifications/progress",
          params: { progressToken, progress: step, total: steps, message: `${steps - step} to go` },
        });
      }
      return { content: [{ type: "text", text: "done" }] };
    },
  );

  mcp.registerTool(
    "inspect-request",
    {
      description:
        "Returns, as JSON, the HTTP headers this server received with the call, to see what a " +
        "proxy forwarded. Debugging aid only: it echoes credentials a proxy injects upstream.",
    },
    (extra) => ({
      content: [{ type: "text", text: JSON.stringify(extra.requestInfo?.headers ?? {}, null, 2) }],
    }),
  );

  mcp.registerResource(
    "about",
    "example://about",
    { description: "What this server is for.", mimeType: "text/plain" },
    (uri) => ({
      contents: [
        {
          uri: uri.href,
          mimeType: "text/plain",
          text: "Example upstream MCP server shipped with mcpgw for demos and tests.",
        },
      ],
    }),
  );

  return mcp;
}

type BodyResult =
  | { ok: true; value: unknown }
  | { ok: false; status: number; code: number; message: string };

async function readJsonBody(req: IncomingMessage): Promise<BodyResult> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      return { ok: false, status: 413, code: -32000, message: "Payload Too Large" };
    }
    chunks.push(chunk);
  }
  try {
    return { ok: true, value: JSON.parse(Buffer.concat(chunks).toString("utf8")) };
  } catch {
    return { ok: false, status: 400, code: -32700, message: "Parse error: Invalid JSON" };
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "Content-Type": "application/json" }).end(JSON.stringify(body));
}

// Same envelope the SDK transport uses for its own HTTP-level errors.
function sendJsonRpcError(res: ServerResponse, status: number, code: number, message: string) {
  sendJson(res, status, { jsonrpc: "2.0", error: { code, message }, id: null });
}

async function main(): Promise<void> {
  const port = Number(process.env.PORT ?? 3001);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`PORT must be an integer between 0 and 65535, got ${process.env.PORT}`);
  }
  const server = await startExampleServer({ port });
  console.log(`mcpgw example MCP server listening on ${server.url}`);
  // `once`: a second Ctrl-C falls through to Node's default handler and kills a stuck shutdown.
  const shutdown = () => {
    server.close().catch((error: unknown) => {
      console.error("example MCP server: shutdown failed:", error);
      process.exitCode = 1;
    });
  };
  process.once("SIGINT", shutdown);
  process.once("SIGTERM", shutdown);
}

const entryPoint = process.argv[1];
if (entryPoint !== undefined && import.meta.url === pathToFileURL(entryPoint).href) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
