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
        hasId: true,
        tool: "echo",
        name: "echo",
        batch: false,
      },
    );
    expect(peek({ jsonrpc: "2.0", id: "a", method: "tools/list" })).toEqual({
      method: "tools/list",
      id: "a",
      hasId: true,
      batch: false,
    });
  });

  it("reads what the 2026-07-28 headers mirror: the target, and the _meta envelope", () => {
    const meta = {
      "io.modelcontextprotocol/protocolVersion": "2026-07-28",
      traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    };
    expect(
      peek({
        jsonrpc: "2.0",
        id: 1,
        method: "resources/read",
        params: { uri: "file:///a", _meta: meta },
      }),
    ).toEqual({
      method: "resources/read",
      id: 1,
      hasId: true,
      name: "file:///a",
      protocolVersion: "2026-07-28",
      traceparent: meta.traceparent,
      batch: false,
    });
    expect(
      peek({
        jsonrpc: "2.0",
        id: 2,
        method: "initialize",
        params: { protocolVersion: "2025-11-25" },
      }),
    ).toMatchObject({ requestedVersion: "2025-11-25" });
    expect(peek({ jsonrpc: "2.0", method: "notifications/initialized" }).hasId).toBe(false);
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
