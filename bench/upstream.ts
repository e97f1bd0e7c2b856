/**
 * A stand-in MCP server for the benchmark: POST /mcp answers `tools/list` with a fixed ~1 KB
 * result. A real MCP server (the SDK's included) spends far more CPU per request than a
 * gateway does, which would bury the gateway's cost in the upstream's noise; this one does
 * the least an MCP server can do, so what the benchmark shows is the cost of the hop.
 *
 * Usage: node dist/bench/upstream.js   (prints {"port":N} once listening on 127.0.0.1)
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { announcePort, MCP_PATH } from "./protocol.js";

const TOOLS = [
  {
    name: "search_issues",
    description: "Search the issue tracker and return matching issues, newest first.",
    inputSchema: {
      type: "object",
      properties: {
        query: { type: "string", description: "Full-text query" },
        state: { type: "string", enum: ["open", "closed", "all"] },
        limit: { type: "integer", minimum: 1, maximum: 100 },
      },
      required: ["query"],
    },
  },
  {
    name: "get_issue",
    description: "Fetch one issue with its comments.",
    inputSchema: {
      type: "object",
      properties: { number: { type: "integer", minimum: 1 } },
      required: ["number"],
    },
  },
  {
    name: "create_comment",
    description: "Add a comment to an issue.",
    inputSchema: {
      type: "object",
      properties: {
        number: { type: "integer", minimum: 1 },
        body: { type: "string", description: "Markdown text of the comment" },
      },
      required: ["number", "body"],
    },
  },
  {
    name: "list_labels",
    description: "List the labels defined in the repository.",
    inputSchema: { type: "object", properties: {} },
  },
];

const INITIALIZE_RESULT = {
  protocolVersion: "2025-06-18",
  capabilities: { tools: { listChanged: false } },
  serverInfo: { name: "mcpgw-bench-upstream", version: "1.0.0" },
};

/** Enough for any request the benchmark sends; a bigger body means something is wrong. */
const MAX_BODY_BYTES = 64 * 1024;

type JsonRpcId = string | number | null;

/**
 * Serialises a response around a pre-rendered result so that the hot path costs one small
 * JSON.stringify (the id) instead of re-serialising the tool list for every request.
 */
function prerender(member: "result" | "error", value: unknown): (id: JsonRpcId) => Buffer {
  const tail = Buffer.from(`,"${member}":${JSON.stringify(value)}}`);
  const head = Buffer.from('{"jsonrpc":"2.0","id":');
  return (id) => Buffer.concat([head, Buffer.from(JSON.stringify(id)), tail]);
}

const toolsListResponse = prerender("result", { tools: TOOLS });
const initializeResponse = prerender("result", INITIALIZE_RESULT);
const toolCallResponse = prerender("result", {
  content: [{ type: "text", text: "Issue #42: the gateway reloads on SIGHUP (open)" }],
});
const methodNotFound = prerender("error", { code: -32601, message: "Method not found" });
const parseError = prerender("error", { code: -32700, message: "Parse error" })(null);

function send(res: ServerResponse, status: number, body?: Buffer): void {
  if (body === undefined) {
    res.writeHead(status, { "content-length": 0 });
    res.end();
    return;
  }
  res.writeHead(status, { "content-type": "application/json", "content-length": body.length });
  res.end(body);
}

function answer(res: ServerResponse, raw: Buffer): void {
  let message: unknown;
  try {
    message = JSON.parse(raw.toString("utf8"));
  } catch {
    send(res, 400, parseError);
    return;
  }
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    send(res, 400, parseError);
    return;
  }
  const { id, method } = message as { id?: JsonRpcId; method?: unknown };
  // Notifications and responses carry no id and get no JSON-RPC answer (202 per the transport).
  if (id === undefined) {
    send(res, 202);
    return;
  }
  switch (method) {
    case "tools/list":
      send(res, 200, toolsListResponse(id));
      return;
    case "initialize":
      send(res, 200, initializeResponse(id));
      return;
    case "tools/call":
      send(res, 200, toolCallResponse(id));
      return;
    default:
      send(res, 200, methodNotFound(id));
  }
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const path = req.url?.split("?", 1)[0];
  if (path !== MCP_PATH) {
    send(res, 404);
    return;
  }
  if (req.method !== "POST") {
    // No server-initiated SSE stream and no sessions: the transport's answer is 405.
    res.setHeader("allow", "POST");
    send(res, 405);
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  req.on("data", (chunk: Buffer) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      send(res, 413);
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on("end", () =>
    answer(res, chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)),
  );
}

const server = createServer(handle);
// Outlive the proxies' pooled connections (undici idles them out after 4 s) so no request is
// ever written to a socket this side is closing, which would surface as a spurious error.
server.keepAliveTimeout = 65_000;
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("expected a TCP address");
  announcePort(address.port);
});
