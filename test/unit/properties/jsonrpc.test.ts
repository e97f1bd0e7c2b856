/**
 * Properties of the JSON-RPC peek: it reads back the method, id, tool and Mcp-Name target of any
 * generated message whatever its formatting, marks every array a batch, and answers bytes that
 * are not JSON with JsonRpcParseError and nothing else.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { JsonRpcParseError, PROTOCOL_VERSION_META, peekJsonRpc } from "../../../src/mcp/jsonrpc.js";

/** The parameter the Mcp-Name header mirrors, by method (MCP 2026-07-28, SEP-2663). */
const NAME_SOURCE = new Map([
  ["tools/call", "name"],
  ["prompts/get", "name"],
  ["resources/read", "uri"],
  ["tasks/get", "taskId"],
  ["tasks/update", "taskId"],
  ["tasks/cancel", "taskId"],
]);

/** Names of Object.prototype members: a lookup table that inherits them would answer these. */
const PROTOTYPE_NAMES = ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf"];

const method = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...NAME_SOURCE.keys(), "initialize", "tools/list") },
  { weight: 1, arbitrary: fc.constantFrom(...PROTOTYPE_NAMES) },
  { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
);

const id = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constant(null),
);

/**
 * The keys a params object is looked up by, including what a lookup through Object.prototype
 * would coerce to (`String(Object)`, `[object Object]`, ...), and any other key.
 */
const paramKey = fc.oneof(
  fc.constantFrom("name", "uri", "taskId", "arguments", "protocolVersion"),
  fc.constantFrom(
    ...PROTOTYPE_NAMES.map((name) => String((Object.prototype as Record<string, unknown>)[name])),
  ),
  fc.string({ maxLength: 10 }),
);

const meta = fc.record(
  {
    [PROTOCOL_VERSION_META]: fc.oneof(fc.constantFrom("2026-07-28", "2025-11-25"), fc.jsonValue()),
    traceparent: fc.oneof(fc.string(), fc.jsonValue()),
    tracestate: fc.oneof(fc.string(), fc.jsonValue()),
  },
  { requiredKeys: [] },
);

/** The members the peek reads, each present or not, each of the right type or not. */
const knownParams = fc.record(
  {
    name: fc.oneof(fc.string(), fc.jsonValue({ maxDepth: 1 })),
    arguments: fc.jsonValue({ maxDepth: 2 }),
    uri: fc.oneof(fc.webUrl(), fc.jsonValue({ maxDepth: 1 })),
    taskId: fc.oneof(fc.uuid(), fc.jsonValue({ maxDepth: 1 })),
    protocolVersion: fc.oneof(fc.constantFrom("2025-11-25", "2026-07-28"), fc.jsonValue()),
    _meta: fc.oneof(meta, fc.jsonValue({ maxDepth: 1 })),
  },
  { requiredKeys: [] },
);

const params = fc.oneof(
  { weight: 3, arbitrary: knownParams },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.dictionary(paramKey, fc.oneof(fc.string(), fc.jsonValue({ maxDepth: 2 })), {
          maxKeys: 5,
        }),
        fc.option(meta, { nil: undefined }),
      )
      .map(([fields, _meta]) => (_meta === undefined ? fields : { ...fields, _meta })),
  },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
);

/** A JSON-RPC message a client may send: a request, notification or response. */
const message = fc.record(
  { jsonrpc: fc.constant("2.0"), method, id, params, result: fc.jsonValue({ maxDepth: 1 }) },
  { requiredKeys: ["jsonrpc"] },
);

type Generated = typeof message extends fc.Arbitrary<infer T> ? T : never;
type Message = { method?: unknown; id?: unknown; params?: unknown };

/** What the peek must read from `value` (the message as the receiver parses it). */
function expected(value: Message) {
  const methodName = typeof value.method === "string" ? value.method : null;
  const fields =
    typeof value.params === "object" && value.params !== null && !Array.isArray(value.params)
      ? (value.params as Record<string, unknown>)
      : undefined;
  const own = (key: string) => (fields && Object.hasOwn(fields, key) ? fields[key] : undefined);
  const source = methodName === null ? undefined : NAME_SOURCE.get(methodName);
  const target = source === undefined ? undefined : own(source);
  const name = typeof target === "string" ? target : undefined;
  const metaFields = own("_meta") as Record<string, unknown> | undefined;
  const metaString = (key: string) => {
    const field = metaFields && typeof metaFields === "object" ? metaFields[key] : undefined;
    return typeof field === "string" ? field : undefined;
  };
  const version = own("protocolVersion");
  return {
    method: methodName,
    id: typeof value.id === "string" || typeof value.id === "number" ? value.id : null,
    hasId: Object.hasOwn(value, "id"),
    tool: methodName === "tools/call" ? name : undefined,
    args: methodName === "tools/call" && name !== undefined ? own("arguments") : undefined,
    name,
    protocolVersion: methodName === null ? undefined : metaString(PROTOCOL_VERSION_META),
    requestedVersion:
      methodName === "initialize" && typeof version === "string" ? version : undefined,
    traceparent: methodName === null ? undefined : metaString("traceparent"),
    tracestate: methodName === null ? undefined : metaString("tracestate"),
    batch: false,
  };
}

const peekText = (text: string) => peekJsonRpc(Buffer.from(text));

describe("peekJsonRpc (properties)", () => {
  it("reads the method, id, tool, target and _meta of any message, however it is formatted", () => {
    fc.assert(
      fc.property(message, fc.constantFrom(undefined, 0, 2, "\t"), (value, indent) => {
        const text = JSON.stringify(value, null, indent);
        // What a receiver reads (JSON has no -0; -0 arrives as 0).
        const received = JSON.parse(text) as Message;
        expect(peekText(text)).toEqual(expected(received));
      }),
      {
        numRuns: 600,
        // Found by this property: the method table was a plain object, so `toString` looked up
        // the key `String(Object.prototype.toString)` and took it for the Mcp-Name target.
        examples: [
          [
            {
              jsonrpc: "2.0",
              method: "toString",
              params: { [String(Object.prototype.toString)]: "" },
            } as Generated,
            undefined,
          ],
        ],
      },
    );
  });

  it("reads the same whatever order the members come in", () => {
    fc.assert(
      fc.property(message, (value) => {
        const reversed = Object.fromEntries(Object.entries(value).reverse());
        expect(peekText(JSON.stringify(reversed))).toEqual(peekText(JSON.stringify(value)));
      }),
      { numRuns: 300 },
    );
  });

  it("marks any array a batch, with no method of its own to read", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(message, fc.jsonValue({ maxDepth: 2 })), { maxLength: 5 }),
        (batch) => {
          expect(peekText(JSON.stringify(batch))).toEqual({
            method: "batch",
            id: null,
            batch: true,
          });
        },
      ),
      { numRuns: 200 },
    );
  });

  it("reads no method or id from a JSON value that is not an object", () => {
    const scalar = fc.oneof(
      fc.string(),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.boolean(),
      fc.constant(null),
    );
    fc.assert(
      fc.property(scalar, (value) => {
        expect(peekText(JSON.stringify(value))).toEqual({ method: null, id: null, batch: false });
      }),
      { numRuns: 200 },
    );
  });

  it("throws JsonRpcParseError for bytes that are not JSON, and only then", () => {
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc.string({ unit: "binary", maxLength: 64 }).map((text) => Buffer.from(text)),
      // Valid messages cut short or with a byte changed.
      fc.tuple(message, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([value, at, byte]) => {
        const buffer = Buffer.from(JSON.stringify(value));
        const index = at % buffer.length;
        return at % 2 === 0
          ? buffer.subarray(0, index)
          : Buffer.concat([buffer.subarray(0, index), Buffer.of(byte), buffer.subarray(index + 1)]);
      }),
    );
    fc.assert(
      fc.property(bytes, (body) => {
        let json: unknown;
        let isJson = true;
        try {
          json = JSON.parse(Buffer.from(body).toString("utf8"));
        } catch {
          isJson = false;
        }
        let thrown: unknown;
        let peek: ReturnType<typeof peekJsonRpc> | undefined;
        try {
          peek = peekJsonRpc(Buffer.from(body));
        } catch (error) {
          thrown = error;
        }
        if (isJson) {
          expect(thrown).toBeUndefined();
          expect(peek?.batch).toBe(Array.isArray(json));
        } else {
          expect(thrown).toBeInstanceOf(JsonRpcParseError);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
