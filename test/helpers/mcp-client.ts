import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CallToolResultSchema } from "@modelcontextprotocol/sdk/types.js";

/** The official SDK client, connected (initialize handshake done) through `url`. */
export async function connectClient(url: string, headers: Record<string, string> = {}) {
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  const client = new Client({ name: "mcpgw-test", version: "0" });
  await client.connect(transport);
  return { client, transport, close: () => client.close() };
}

export function textOf(result: unknown): string {
  const [first] = CallToolResultSchema.parse(result).content;
  if (first?.type !== "text")
    throw new Error(`expected text content, got ${JSON.stringify(result)}`);
  return first.text;
}

export const POST_HEADERS = {
  "content-type": "application/json",
  accept: "application/json, text/event-stream",
};

export const TOOLS_LIST = JSON.stringify({ jsonrpc: "2.0", id: 7, method: "tools/list" });

export const INITIALIZE = JSON.stringify({
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: {
    protocolVersion: "2025-06-18",
    capabilities: {},
    clientInfo: { name: "mcpgw-test", version: "0" },
  },
});

/** POSTs an MCP initialize with `key`; resolves with the status (200 once authenticated). */
export async function initializeStatus(url: string, key?: string): Promise<number> {
  const headers: Record<string, string> = { ...POST_HEADERS };
  if (key !== undefined) headers.authorization = `Bearer ${key}`;
  const res = await fetch(url, { method: "POST", headers, body: INITIALIZE });
  await res.arrayBuffer();
  return res.status;
}
