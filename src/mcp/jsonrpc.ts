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
  /** Whether the message has an `id` member (a request, not a notification). */
  hasId?: boolean;
  /** `params.name` of a `tools/call`. */
  tool?: string | undefined;
  /** `params.arguments` of a `tools/call` (the parsed value, not a copy). */
  args?: unknown;
  /**
   * What the `Mcp-Name` header mirrors (MCP 2026-07-28): `params.name` of a tools/call or
   * prompts/get, `params.uri` of a resources/read, `params.taskId` of tasks/get, update, cancel.
   */
  name?: string | undefined;
  /** `params._meta["io.modelcontextprotocol/protocolVersion"]`: the 2026-07-28 envelope's version. */
  protocolVersion?: string | undefined;
  /** `params.protocolVersion` of an initialize: the version a session-era client asks for. */
  requestedVersion?: string | undefined;
  /** `params._meta.traceparent` / `tracestate` (SEP-414): trace context carried in the message. */
  traceparent?: string | undefined;
  tracestate?: string | undefined;
  batch: boolean;
}

/** JSON-RPC 2.0 §5.1 error codes the gateway uses. */
export const JSONRPC_PARSE_ERROR = -32700;
export const JSONRPC_SERVER_ERROR = -32000;
export const JSONRPC_INVALID_PARAMS = -32602;
/** A call the policy refuses (HTTP 403); `data.rule` names the rule. */
export const JSONRPC_FORBIDDEN = -32003;
/** MCP 2026-07-28: the request's headers disagree with its body (HTTP 400). */
export const JSONRPC_HEADER_MISMATCH = -32020;
/** MCP 2026-07-28: the receiver does not serve the requested protocol version (HTTP 400). */
export const JSONRPC_UNSUPPORTED_PROTOCOL_VERSION = -32022;
/** What the MCP SDKs answer for an unknown or ended Mcp-Session-Id (with HTTP 404). */
export const JSONRPC_SESSION_NOT_FOUND = -32001;
/** MCP 2025-11-25: the request needs the user to visit a URL first (`data.elicitations`). */
export const JSONRPC_URL_ELICITATION_REQUIRED = -32042;

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
  // Every field present from the start: one object shape for every peek, so the steps that
  // read it stay monomorphic.
  const peek: JsonRpcPeek = {
    method: typeof method === "string" ? method : null,
    id: typeof id === "string" || typeof id === "number" ? id : null,
    hasId: id !== undefined,
    tool: undefined,
    args: undefined,
    name: undefined,
    protocolVersion: undefined,
    requestedVersion: undefined,
    traceparent: undefined,
    tracestate: undefined,
    batch: false,
  };
  if (typeof params !== "object" || params === null || peek.method === null) return peek;
  const fields = params as Record<string, unknown>;
  const source = NAME_SOURCE.get(peek.method);
  if (source !== undefined) {
    const name = fields[source];
    if (typeof name === "string") {
      peek.name = name;
      if (peek.method === "tools/call") {
        peek.tool = name;
        if (fields.arguments !== undefined) peek.args = fields.arguments;
      }
    }
  }
  if (peek.method === "initialize" && typeof fields.protocolVersion === "string") {
    peek.requestedVersion = fields.protocolVersion;
  }
  const meta = fields._meta;
  if (typeof meta === "object" && meta !== null) {
    const {
      [PROTOCOL_VERSION_META]: version,
      traceparent,
      tracestate,
    } = meta as Record<string, unknown>;
    if (typeof version === "string") peek.protocolVersion = version;
    if (typeof traceparent === "string") peek.traceparent = traceparent;
    if (typeof tracestate === "string") peek.tracestate = tracestate;
  }
  return peek;
}

/** Where a 2026-07-28 request carries its protocol version (SEP-2575). */
export const PROTOCOL_VERSION_META = "io.modelcontextprotocol/protocolVersion";

/**
 * The parameter the `Mcp-Name` header mirrors, by method (2026-07-28 Streamable HTTP, Standard
 * Request Headers; the tasks rows from SEP-2663). A Map: a method named like an Object.prototype
 * member (`toString`, `__proto__`) has no target.
 */
const NAME_SOURCE: ReadonlyMap<string, string> = new Map([
  ["tools/call", "name"],
  ["prompts/get", "name"],
  ["resources/read", "uri"],
  ["tasks/get", "taskId"],
  ["tasks/update", "taskId"],
  ["tasks/cancel", "taskId"],
]);

export function jsonRpcError(id: JsonRpcId, code: number, message: string, data?: unknown): string {
  const error = data === undefined ? { code, message } : { code, message, data };
  return JSON.stringify({ jsonrpc: "2.0", id, error });
}
