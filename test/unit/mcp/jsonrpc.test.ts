import { describe, expect, it } from "vitest";
import { JsonRpcParseError, peekJsonRpc } from "../../../src/mcp/jsonrpc.js";

const peek = (value: unknown) =>
  peekJsonRpc(Buffer.from(typeof value === "string" ? value : JSON.stringify(value)));

describe("peekJsonRpc", () => {
  it("reads method, id and the tool of tools/call", () => {
    expect(peek({ jsonrpc: "2.0", id: 3, method: "tools/call", params: { name: "echo" } })).toEqual(
      {
        method: "tools/call",
        id: 3,
        tool: "echo",
        batch: false,
      },
    );
    expect(peek({ jsonrpc: "2.0", id: "a", method: "tools/list" })).toEqual({
      method: "tools/list",
      id: "a",
      batch: false,
    });
  });

  it("marks batches, notifications and client responses", () => {
    expect(peek([{ jsonrpc: "2.0", id: 1, method: "ping" }])).toEqual({
      method: "batch",
      id: null,
      batch: true,
    });
    expect(peek({ jsonrpc: "2.0", method: "notifications/initialized" })).toMatchObject({
      id: null,
    });
    expect(peek({ jsonrpc: "2.0", id: 9, result: {} })).toMatchObject({ method: null, id: 9 });
    expect(peek(42)).toEqual({ method: null, id: null, batch: false });
  });

  it("throws a parse error for bytes that are not JSON", () => {
    expect(() => peek('{"jsonrpc":')).toThrow(JsonRpcParseError);
    expect(() => peek("")).toThrow(JsonRpcParseError);
  });
});
