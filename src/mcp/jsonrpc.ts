/**
 * Reads what the audit log and traces need from a JSON-RPC message without changing the bytes
 * that are forwarded: the gateway forwards the original body, never a re-serialisation.
 */

export type JsonRpcId = string | number | null;

export interface JsonRpcPeek {
  /** `tools/call`, ...; `batch` for an array; null for a JSON-RPC response sent by the client. */
  method: string | null;
  /** The request id; null for notifications and batches. */
  id: JsonRpcId;
  /** `params.name` of a `tools/call`. */
  tool?: string;
  batch: boolean;
}

/** JSON-RPC 2.0 §5.1 error codes the gateway uses. */
export const JSONRPC_PARSE_ERROR = -32700;
export const JSONRPC_SERVER_ERROR = -32000;
/** What the MCP SDKs answer for an unknown or ended Mcp-Session-Id (with HTTP 404). */
export const JSONRPC_SESSION_NOT_FOUND = -32001;

/** Thrown when the body is not JSON; the request is answered -32700 and nothing is forwarded. */
export class JsonRpcParseError extends Error {
  override readonly name = "JsonRpcParseError";
}

export function peekJsonRpc(body: Buffer): JsonRpcPeek {
  let message: unknown;
  try {
    message = JSON.parse(body.toString("utf8"));
  } catch (error) {
    throw new JsonRpcParseError((error as Error).message);
  }
  if (Array.isArray(message)) return { method: "batch", id: null, batch: true };
  if (typeof message !== "object" || message === null) {
    return { method: null, id: null, batch: false };
  }
  const { method, id, params } = message as { method?: unknown; id?: unknown; params?: unknown };
  const peek: JsonRpcPeek = {
    method: typeof method === "string" ? method : null,
    id: typeof id === "string" || typeof id === "number" ? id : null,
    batch: false,
  };
  if (peek.method === "tools/call" && typeof params === "object" && params !== null) {
    const name = (params as { name?: unknown }).name;
    if (typeof name === "string") peek.tool = name;
  }
  return peek;
}

export function jsonRpcError(id: JsonRpcId, code: number, message: string, data?: unknown): string {
  const error = data === undefined ? { code, message } : { code, message, data };
  return JSON.stringify({ jsonrpc: "2.0", id, error });
}
