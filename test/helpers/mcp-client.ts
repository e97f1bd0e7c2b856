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
  if (first?.type !== "text") throw new Error(`expected text content, got ${JSON.stringify(result)}`);
  return first.text;
}

export const POST_HEADERS = {
  "content-type": "application/json",
  accept: "application/json, text/event-stream",
};

export const TOOLS_LIST = JSON.stringify({ jsonrpc: "2.0", id: 7, method: "tools/list" });
