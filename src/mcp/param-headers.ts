/**
 * `Mcp-Param-*` headers (MCP 2026-07-28 Streamable HTTP, "Schema Extension"): a tool may mark
 * properties of its input schema with `x-mcp-header: Name`, and a client then mirrors those
 * arguments of a tools/call in `Mcp-Param-Name` headers. Which header mirrors which argument
 * is only in the tool's schema, so the gateway learns the declarations from the 2026-07-28
 * tools/list answers it relays (per route, bounded), and checks the headers of later calls of
 * a tool it has seen. A tool it has not seen listed is left to the upstream, which checks its
 * own declarations.
 */
import { setBounded } from "../lib/bounded-map.js";
import type { MessageTransform } from "./rewrite.js";

export interface ParamHeader {
  /** The property path in `arguments`. */
  path: readonly string[];
  /** `Mcp-Param-<name>`, lower-cased as Node gives request headers. */
  header: string;
  /** The same, as the tool declares it (for messages). */
  name: string;
  /** Integers compare as numbers (`42.0` equals `42`). */
  numeric: boolean;
}

/** Tools a route has listed, by name; at most this many are remembered. */
const MAX_TOOLS = 2_000;

/** The declarations of one route's tools, learned from what the upstream lists. */
export class ToolHeaderCatalog {
  readonly #tools = new Map<string, readonly ParamHeader[]>();

  /** The declarations of `tool`, or undefined when it has not been listed here. */
  get(tool: string): readonly ParamHeader[] | undefined {
    return this.#tools.get(tool);
  }

  /** A response transform that reads a tools/list result and passes it on unchanged. */
  readonly learn: MessageTransform = (message) => {
    const tools = (message as { result?: { tools?: unknown } }).result?.tools;
    if (!Array.isArray(tools)) return message;
    for (const tool of tools) {
      const { name, inputSchema } = (tool ?? {}) as { name?: unknown; inputSchema?: unknown };
      if (typeof name === "string") {
        setBounded(this.#tools, name, declarationsOf(inputSchema), MAX_TOOLS);
      }
    }
    return message;
  };
}

/** The `x-mcp-header` declarations reachable through `properties` chains (the only valid place). */
export function declarationsOf(schema: unknown, path: readonly string[] = []): ParamHeader[] {
  const properties = (schema as { properties?: unknown } | null)?.properties;
  if (typeof properties !== "object" || properties === null) return [];
  const found: ParamHeader[] = [];
  for (const [key, property] of Object.entries(properties)) {
    if (typeof property !== "object" || property === null) continue;
    const { "x-mcp-header": header, type } = property as Record<string, unknown>;
    if (typeof header === "string" && header !== "") {
      found.push({
        path: [...path, key],
        header: `mcp-param-${header.toLowerCase()}`,
        name: `Mcp-Param-${header}`,
        numeric: type === "integer" || type === "number",
      });
    }
    found.push(...declarationsOf(property, [...path, key]));
  }
  return found;
}

/**
 * What disagrees between the `Mcp-Param-*` headers and the call's arguments, or undefined.
 * An argument that is absent or null needs no header; one that is present needs its header,
 * equal to its value once decoded.
 */
export function paramHeaderMismatch(
  declarations: readonly ParamHeader[],
  args: unknown,
  headers: Readonly<Record<string, string | string[] | undefined>>,
): string | undefined {
  for (const { path, header, name, numeric } of declarations) {
    const value = valueAt(args, path);
    if (value === undefined || value === null) continue;
    const expected =
      typeof value === "string" || typeof value === "number" || typeof value === "boolean"
        ? String(value)
        : undefined;
    if (expected === undefined) continue;
    const raw = headers[header];
    if (typeof raw !== "string") {
      return `the body carries arguments.${path.join(".")} but the ${name} header is absent`;
    }
    const decoded = decodeHeaderValue(raw.trim());
    if (decoded === undefined) return `the ${name} header carries an invalid Base64 value`;
    const equal =
      numeric && typeof value === "number" && /^-?\d+(\.\d+)?$/.test(decoded)
        ? Number(decoded) === value
        : decoded === expected;
    if (!equal) {
      return `the ${name} header says ${JSON.stringify(decoded)} but the body carries arguments.${path.join(".")}=${JSON.stringify(value)}`;
    }
  }
  return undefined;
}

function valueAt(root: unknown, path: readonly string[]): unknown {
  let node = root;
  for (const key of path) {
    if (typeof node !== "object" || node === null) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

const BASE64_CANONICAL = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * An `Mcp-Name` / `Mcp-Param-*` value: as it is, or, in the `=?base64?...?=` form that carries
 * what a header cannot, decoded as UTF-8. Undefined for that form with a payload that is not
 * canonical base64 of UTF-8.
 */
export function decodeHeaderValue(value: string): string | undefined {
  if (!value.startsWith("=?base64?") || !value.endsWith("?=") || value.length < 11) return value;
  const payload = value.slice(9, -2);
  if (!BASE64_CANONICAL.test(payload)) return undefined;
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(Buffer.from(payload, "base64"));
  } catch {
    return undefined;
  }
}
