/**
 * What the benchmark's processes agree on: the request every client sends and the one-line
 * handshake a helper server uses to announce its ephemeral port to bench/run.ts.
 */

export const MCP_PATH = "/mcp";

/** The JSON-RPC request every load-generator connection sends, over and over. */
export const TOOLS_LIST_REQUEST = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" });

/** A session-era tools/call, as a 2025-11-25 client sends it inside its session. */
export const TOOLS_CALL_REQUEST = JSON.stringify({
  jsonrpc: "2.0",
  id: 2,
  method: "tools/call",
  params: { name: "get_issue", arguments: { repo: "acme/gateway", number: 42 } },
});

export const TOOLS_CALL_HEADERS: Readonly<Record<string, string>> = {
  "mcp-protocol-version": "2025-11-25",
  "mcp-session-id": "2f1c3b1e-7a4d-4a55-9d0e-0d6c8f1b9a77",
};

/** The same call in the 2026-07-28 era: the version in `_meta`, the headers that mirror it. */
export const TOOLS_CALL_2026_REQUEST = JSON.stringify({
  jsonrpc: "2.0",
  id: 2,
  method: "tools/call",
  params: {
    name: "get_issue",
    arguments: { repo: "acme/gateway", number: 42 },
    _meta: {
      "io.modelcontextprotocol/protocolVersion": "2026-07-28",
      "io.modelcontextprotocol/clientCapabilities": {},
    },
  },
});

export const TOOLS_CALL_2026_HEADERS: Readonly<Record<string, string>> = {
  "mcp-protocol-version": "2026-07-28",
  "mcp-method": "tools/call",
  "mcp-name": "get_issue",
};

/** Headers an MCP Streamable HTTP client sends with a POST, minus the credentials. */
export const MCP_CLIENT_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "application/json",
  accept: "application/json, text/event-stream",
};

/**
 * Helper servers bind port 0 so runs never collide, then print `{"port":N}` as their first
 * stdout line; the harness waits for that line rather than polling the port.
 */
export function announcePort(port: number): void {
  process.stdout.write(`${JSON.stringify({ port })}\n`);
}

export function parsePortAnnouncement(line: string): number | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof parsed !== "object" || parsed === null || !("port" in parsed)) return undefined;
  const { port } = parsed;
  return typeof port === "number" && Number.isInteger(port) && port > 0 ? port : undefined;
}

/** Parses `http://127.0.0.1:PORT/mcp` style arguments, failing with the usage line. */
export function requireUrlArgument(value: string | undefined, usage: string): URL {
  if (value === undefined) throw new Error(`usage: ${usage}`);
  try {
    return new URL(value);
  } catch {
    throw new Error(`not a URL: ${value}\nusage: ${usage}`);
  }
}
