import type { IncomingHttpHeaders } from "node:http";
import type { Progress } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import {
  connectClient,
  INITIALIZE,
  POST_HEADERS,
  TOOLS_LIST,
  textOf,
} from "../helpers/mcp-client.js";

const KEY = "test-key-integration-0123456789";

describe("gateway in front of an SDK-built MCP server", () => {
  let upstream: ExampleServer;
  let gw: TestGateway;
  const upstreamSaw: { method?: string; headers: IncomingHttpHeaders }[] = [];

  beforeAll(async () => {
    upstream = await startExampleServer({
      onRequest: (req) => upstreamSaw.push({ method: req.method, headers: req.headers }),
    });
    gw = await startGateway({
      upstream: { url: upstream.url },
      auth: {
        keys: [
          { id: "integration", hash: await cheapHash(KEY), scopes: ["mcp:read", "mcp:write"] },
        ],
      },
    });
  });

  afterAll(async () => {
    await gw.stop();
    await upstream.close();
  });

  it("lists and calls tools through the gateway with the official SDK client", async () => {
    const { client, close } = await connectClient(gw.url, { authorization: `Bearer ${KEY}` });
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name)).toEqual(
      expect.arrayContaining(["echo", "add", "countdown", "inspect-request"]),
    );
    expect(textOf(await client.callTool({ name: "echo", arguments: { message: "hi" } }))).toContain(
      "hi",
    );
    expect(textOf(await client.callTool({ name: "add", arguments: { a: 2, b: 3 } }))).toContain(
      "5",
    );
    await close();
  });

  it("streams progress notifications before the result (SSE is not buffered)", async () => {
    const { client, close } = await connectClient(gw.url, { authorization: `Bearer ${KEY}` });
    const events: string[] = [];
    const result = await client.callTool(
      { name: "countdown", arguments: { steps: 3, interval_ms: 100 } },
      undefined,
      {
        onprogress: (progress: Progress) => {
          events.push(`progress ${progress.progress}`);
        },
      },
    );
    events.push(`result ${textOf(result)}`);
    expect(events).toEqual(["progress 1", "progress 2", "progress 3", "result done"]);
    await close();
  });

  it("never forwards the client's Authorization or Cookie, and adds X-Forwarded-*", async () => {
    const { client, close } = await connectClient(gw.url, {
      authorization: `Bearer ${KEY}`,
      cookie: "session=secret-cookie",
    });
    const seen = JSON.parse(
      textOf(await client.callTool({ name: "inspect-request", arguments: {} })),
    );
    expect(seen.authorization).toBeUndefined();
    expect(seen.cookie).toBeUndefined();
    expect(seen["x-forwarded-for"]).toBe("127.0.0.1");
    expect(seen["x-forwarded-proto"]).toBe("http");
    expect(seen["x-forwarded-host"]).toBe(new URL(gw.url).host);
    expect(seen["mcp-session-id"]).toMatch(/[0-9a-f-]{36}/);
    for (const request of upstreamSaw) {
      expect(request.headers.authorization).toBeUndefined();
      expect(request.headers.cookie).toBeUndefined();
    }
    expect(JSON.stringify(upstreamSaw)).not.toContain(KEY);
    await close();
  });

  it("writes one audit line per request with session, method, tool and identity", async () => {
    const { client, transport, close } = await connectClient(gw.url, {
      authorization: `Bearer ${KEY}`,
    });
    await client.callTool({ name: "echo", arguments: { message: "audited" } });
    const sessionId = transport.sessionId;
    await transport.terminateSession();
    await close();
    const records = await gw.auditRecords(1);
    const mine = records.filter((record) => record.session_id === sessionId);
    const methods = mine.map((record) => record.method);
    expect(methods).toEqual(
      expect.arrayContaining(["initialize", "notifications/initialized", "tools/call", "DELETE"]),
    );
    const initialize = mine.find((record) => record.method === "initialize");
    // The session id of initialize comes from the upstream's response header.
    expect(initialize?.session_id).toBe(sessionId);
    const call = mine.find((record) => record.method === "tools/call");
    expect(call).toMatchObject({
      tool: "echo",
      action: "allow",
      auth_type: "api_key",
      auth_result: "ok",
      key_id: "integration",
      scopes: "mcp:read mcp:write",
      status: 200,
      remote_addr: "127.0.0.1",
    });
    expect(typeof call?.request_id).toBe("number");
    expect(call?.ts).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(call?.latency_ms).toBeGreaterThan(0);
    expect(JSON.stringify(records)).not.toContain(KEY);
  });

  it("runs argon2 once per distinct key, and once per distinct wrong key", async () => {
    const runs = () => gw.logs.filter((line) => line.msg === "argon2 verification").length;
    const before = runs();
    const send = (key: string) =>
      fetch(gw.url, {
        method: "POST",
        headers: { ...POST_HEADERS, authorization: `Bearer ${key}` },
        body: TOOLS_LIST,
      });
    const wrong = await Promise.all([
      send("wrong-key-1"),
      send("wrong-key-1"),
      send("wrong-key-1"),
    ]);
    expect(wrong.map((res) => res.status)).toEqual([401, 401, 401]);
    expect(runs() - before).toBe(1);
    // The valid key was verified by earlier tests of this generation: no further run.
    const right = await send(KEY);
    await right.text();
    expect(runs() - before).toBe(1);
    expect(gw.rawLogs()).not.toContain(KEY);
    expect(gw.rawLogs()).not.toContain("wrong-key-1");
  });

  it("passes Mcp-Session-Id and MCP-Protocol-Version both ways", async () => {
    const init = await fetch(gw.url, {
      method: "POST",
      headers: { ...POST_HEADERS, authorization: `Bearer ${KEY}` },
      body: INITIALIZE,
    });
    const sessionId = init.headers.get("mcp-session-id");
    expect(sessionId).toBeTruthy();
    await init.text();
    const list = await fetch(gw.url, {
      method: "POST",
      headers: {
        ...POST_HEADERS,
        authorization: `Bearer ${KEY}`,
        "mcp-session-id": sessionId as string,
        "mcp-protocol-version": "2025-06-18",
      },
      body: TOOLS_LIST,
    });
    expect(list.status).toBe(200);
    expect(await list.text()).toContain('"tools"');
    const last = upstreamSaw.at(-1);
    expect(last?.headers["mcp-session-id"]).toBe(sessionId);
    expect(last?.headers["mcp-protocol-version"]).toBe("2025-06-18");
  });
});
