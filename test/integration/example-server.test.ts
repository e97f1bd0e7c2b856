import type { IncomingHttpHeaders } from "node:http";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { Progress } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { connectClient, INITIALIZE, POST_HEADERS, textOf } from "../helpers/mcp-client.js";

const PROBE_HEADER = "x-mcpgw-probe";

interface SeenRequest {
  method: string | undefined;
  headers: IncomingHttpHeaders;
  localAddress: string | undefined;
}

describe("example MCP server, SSE responses", () => {
  let server: ExampleServer;
  let client: Client;
  let transport: StreamableHTTPClientTransport;
  const seen: SeenRequest[] = [];

  beforeAll(async () => {
    server = await startExampleServer({
      port: 0,
      onRequest: (req) => {
        seen.push({
          method: req.method,
          headers: req.headers,
          localAddress: req.socket.localAddress,
        });
      },
    });
    ({ client, transport } = await connectClient(server.url, { [PROBE_HEADER]: "from-test" }));
  });

  afterAll(async () => {
    await client?.close();
    await server?.close();
  });

  it("is bound to loopback on the port it reports", () => {
    const url = new URL(server.url);
    expect(url.hostname).toBe("127.0.0.1");
    expect(url.pathname).toBe("/mcp");
    expect(Number(url.port)).toBe(server.port);
    expect(server.port).toBeGreaterThan(0);
    expect(seen.length).toBeGreaterThan(0);
    for (const request of seen) expect(request.localAddress).toBe("127.0.0.1");
  });

  it("lists its four tools", async () => {
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name).sort()).toEqual([
      "add",
      "countdown",
      "echo",
      "inspect-request",
    ]);
  });

  it("echoes and adds", async () => {
    const echoed = await client.callTool({
      name: "echo",
      arguments: { message: "hello, gateway" },
    });
    expect(textOf(echoed)).toBe("hello, gateway");

    const sum = await client.callTool({ name: "add", arguments: { a: 2, b: 40.5 } });
    expect(textOf(sum)).toBe("42.5");
  });

  it("streams one progress notification per countdown step before the result", async () => {
    const events: string[] = [];
    const progress: Progress[] = [];
    const result = await client.callTool(
      { name: "countdown", arguments: { steps: 3, interval_ms: 1 } },
      undefined,
      {
        onprogress: (update) => {
          events.push(`progress ${update.progress}`);
          progress.push(update);
        },
      },
    );
    events.push(`result ${textOf(result)}`);

    expect(events).toEqual(["progress 1", "progress 2", "progress 3", "result done"]);
    expect(progress.map((update) => update.total)).toEqual([3, 3, 3]);
    expect(progress.every((update) => typeof update.message === "string")).toBe(true);
  });

  it("skips progress notifications when the caller did not ask for progress", async () => {
    const result = await client.callTool({
      name: "countdown",
      arguments: { steps: 2, interval_ms: 0 },
    });
    expect(textOf(result)).toBe("done");
  });

  it("rejects countdown arguments outside the schema", async () => {
    const result = await client.callTool({ name: "countdown", arguments: { steps: 51 } });
    expect(result.isError).toBe(true);
  });

  it("reports the headers it received for the call", async () => {
    const result = await client.callTool({ name: "inspect-request", arguments: {} });
    const headers = JSON.parse(textOf(result)) as Record<string, string>;
    expect(headers["mcp-session-id"]).toBe(transport.sessionId);
    expect(headers["content-type"]).toBe("application/json");
    expect(headers[PROBE_HEADER]).toBe("from-test");
  });

  it("shows every request to onRequest before handling it", async () => {
    const before = seen.length;
    await client.callTool({ name: "echo", arguments: { message: "seen?" } });
    const call = seen.slice(before).find((request) => request.method === "POST");
    expect(call?.headers[PROBE_HEADER]).toBe("from-test");
    expect(call?.headers["mcp-session-id"]).toBe(transport.sessionId);
  });

  it("answers 404 outside /mcp", async () => {
    const response = await fetch(new URL("/elsewhere", server.url));
    expect(response.status).toBe(404);
    expect(response.headers.get("content-type")).toBe("application/json");
  });

  it("answers a session-less POST statelessly, so one curl can list tools", async () => {
    const response = await fetch(server.url, {
      method: "POST",
      headers: POST_HEADERS,
      body: JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("mcp-session-id")).toBeNull();
    const text = await response.text();
    expect(text).toContain('"id":2');
    expect(text).toContain('"name":"countdown"');
  });

  it("answers 404 for an unknown session", async () => {
    const response = await fetch(server.url, {
      method: "POST",
      headers: { ...POST_HEADERS, "mcp-session-id": "no-such-session" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" }),
    });
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { code: -32001 } });
  });

  it("forgets a session once the client deletes it", async () => {
    const other = await connectClient(server.url);
    const sessionId = other.transport.sessionId;
    expect(sessionId).toBeDefined();
    await other.transport.terminateSession();
    await other.client.close();

    const response = await fetch(server.url, {
      method: "POST",
      headers: { ...POST_HEADERS, "mcp-session-id": sessionId ?? "" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" }),
    });
    expect(response.status).toBe(404);
  });
});

describe("example MCP server, JSON responses", () => {
  let server: ExampleServer;

  beforeAll(async () => {
    server = await startExampleServer({ port: 0, jsonResponse: true });
  });

  afterAll(async () => {
    await server?.close();
  });

  it("answers initialize with a plain JSON body and a session id", async () => {
    const response = await fetch(server.url, {
      method: "POST",
      headers: POST_HEADERS,
      body: INITIALIZE,
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/json");
    expect(response.headers.get("mcp-session-id")).toMatch(/^[0-9a-f-]{36}$/);
    expect(await response.json()).toMatchObject({
      jsonrpc: "2.0",
      id: 1,
      result: { serverInfo: { name: "mcpgw-example-server" } },
    });
  });

  it("serves the SDK client", async () => {
    const { client } = await connectClient(server.url);
    try {
      const { tools } = await client.listTools();
      expect(tools).toHaveLength(4);
      const sum = await client.callTool({ name: "add", arguments: { a: 1, b: 2 } });
      expect(textOf(sum)).toBe("3");
    } finally {
      await client.close();
    }
  });

  // A JSON body has nowhere to carry notifications, and the SDK drops them rather than holding
  // them: a gateway cannot expect progress from an upstream in this mode.
  it("returns the countdown result without any progress", async () => {
    const { client } = await connectClient(server.url);
    try {
      const progress: Progress[] = [];
      const result = await client.callTool(
        { name: "countdown", arguments: { steps: 3, interval_ms: 0 } },
        undefined,
        { onprogress: (update) => progress.push(update) },
      );
      expect(textOf(result)).toBe("done");
      expect(progress).toEqual([]);
    } finally {
      await client.close();
    }
  });
});

describe("example MCP server shutdown", () => {
  // Raw HTTP rather than the SDK client: when a response stream ends without a result, the SDK
  // client tries to resume it and only gives up at its request timeout.
  it("ends open streams and in-flight calls on close()", async () => {
    const server = await startExampleServer({ port: 0 });
    try {
      const initialized = await fetch(server.url, {
        method: "POST",
        headers: POST_HEADERS,
        body: INITIALIZE,
      });
      const sessionId = initialized.headers.get("mcp-session-id") ?? "";
      await initialized.body?.cancel();

      const standalone = await fetch(server.url, {
        headers: { accept: "text/event-stream", "mcp-session-id": sessionId },
      });
      expect(standalone.status).toBe(200);
      const countdown = await fetch(server.url, {
        method: "POST",
        headers: { ...POST_HEADERS, "mcp-session-id": sessionId },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 2,
          method: "tools/call",
          params: {
            name: "countdown",
            arguments: { steps: 50, interval_ms: 5000 },
            _meta: { progressToken: "shutdown" },
          },
        }),
      });
      const stream = new SseText(countdown);
      await stream.readUntil("notifications/progress");

      await server.close();

      expect(await stream.readToEnd()).not.toContain('"result"');
      expect(await new SseText(standalone).readToEnd()).toBe("");
    } finally {
      // A second close() on success: it is idempotent, so teardown and signal handlers may race.
      await server.close();
    }
  });
});

/** Accumulates an SSE response body as text, without parsing events. */
class SseText {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new TextDecoder();
  #text = "";

  constructor(response: Response) {
    if (response.body === null) throw new Error("response has no body");
    this.#reader = response.body.getReader();
  }

  async readUntil(needle: string): Promise<void> {
    while (!this.#text.includes(needle)) {
      const { done, value } = await this.#reader.read();
      if (done) throw new Error(`stream ended before ${needle}: ${this.#text}`);
      this.#text += this.#decoder.decode(value, { stream: true });
    }
  }

  /** Everything arriving after what has been read so far, until the stream ends. */
  async readToEnd(): Promise<string> {
    const start = this.#text.length;
    for (;;) {
      const { done, value } = await this.#reader.read();
      if (done) return this.#text.slice(start);
      this.#text += this.#decoder.decode(value, { stream: true });
    }
  }
}
