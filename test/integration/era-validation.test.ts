/**
 * MCP 2026-07-28 requests through the gateway: headers that disagree with the body are refused
 * before anything reaches the upstream; a route with protocol.min_version refuses older eras.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHttpServer } from "../helpers/fake-upstreams.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { INITIALIZE, POST_HEADERS } from "../helpers/mcp-client.js";

const KEY = "era-suite-key-0123456789";
const MODERN = "2026-07-28";
const MODERN_ONLY = "/modern/mcp";

let upstream: { url: string; close: () => Promise<void> };
let forwarded = 0;
let gw: TestGateway;
let origin: string;

/** A tool that mirrors two of its arguments in Mcp-Param-* headers. */
const TOOLS = [
  {
    name: "get_weather",
    inputSchema: {
      type: "object",
      properties: {
        region: { type: "string", "x-mcp-header": "Region" },
        days: { type: "integer", "x-mcp-header": "Days" },
        units: { type: "string" },
      },
    },
  },
];

/**
 * A stateless upstream that answers every request with a result naming what it received: the
 * gateway's checks are what is tested here (test/e2e/eras.test.ts runs real SDK servers).
 */
async function startStatelessUpstream() {
  const server = await startHttpServer(async (req, res) => {
    forwarded++;
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const message = JSON.parse(Buffer.concat(chunks).toString() || "{}");
    const text = JSON.stringify({ method: message.method, arguments: message.params?.arguments });
    const result =
      message.method === "tools/list" ? { tools: TOOLS } : { content: [{ type: "text", text }] };
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ jsonrpc: "2.0", id: message.id, result }));
  });
  return { url: server.url, close: server.close };
}

beforeAll(async () => {
  upstream = await startStatelessUpstream();
  gw = await startGateway({
    upstream: { url: upstream.url },
    routes: [
      { path: MODERN_ONLY, upstream: { url: upstream.url }, protocol: { min_version: MODERN } },
    ],
    auth: { keys: [{ id: "era", hash: await cheapHash(KEY) }] },
  });
  origin = new URL(gw.url).origin;
});

afterAll(async () => {
  await gw.stop();
  await upstream.close();
});

/** A 2026-07-28 tools/call of echo, with the headers a conforming client sends. */
function modernCall(name = "echo") {
  return {
    body: {
      jsonrpc: "2.0",
      id: 11,
      method: "tools/call",
      params: {
        name,
        arguments: { message: "hi" },
        _meta: {
          "io.modelcontextprotocol/protocolVersion": MODERN,
          "io.modelcontextprotocol/clientCapabilities": {},
        },
      },
    },
    headers: { "mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": name },
  };
}

async function send(
  body: unknown,
  headers: Record<string, string | undefined>,
  path = "/mcp",
  key: string | null = KEY,
) {
  const sent: Record<string, string> = { ...POST_HEADERS };
  if (key !== null) sent.authorization = `Bearer ${key}`;
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) sent[name] = value;
  const res = await fetch(`${origin}${path}`, {
    method: "POST",
    headers: sent,
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, text: await res.text() };
}

async function expectMismatch(body: unknown, headers: Record<string, string | undefined>) {
  const before = forwarded;
  const { status, text } = await send(body, headers);
  expect(status).toBe(400);
  const parsed = JSON.parse(text);
  expect(parsed).toMatchObject({
    jsonrpc: "2.0",
    id: (body as { id?: unknown }).id ?? null,
    error: { code: -32020, data: { error: "header_mismatch" } },
  });
  expect(forwarded).toBe(before);
  const record = (await gw.auditRecords(1)).at(-1);
  expect(record).toMatchObject({ status: 400, error: "header_mismatch", protocol_version: MODERN });
  return parsed.error.message as string;
}

describe("a 2026-07-28 request", () => {
  it("passes when its headers agree with its body, audited with its version and no session", async () => {
    const { body, headers } = modernCall();
    const before = forwarded;
    const { status, text } = await send(body, headers);
    expect(status).toBe(200);
    expect(text).toContain("hi");
    expect(forwarded).toBe(before + 1);
    const record = (await gw.auditRecords(1)).at(-1);
    expect(record).toMatchObject({
      protocol_version: MODERN,
      session_id: null,
      method: "tools/call",
      tool: "echo",
      request_id: 11,
      status: 200,
    });
  });

  it("audits the prompt or resource its Mcp-Name names", async () => {
    const envelope = { "io.modelcontextprotocol/protocolVersion": MODERN };
    const read = {
      jsonrpc: "2.0",
      id: 12,
      method: "resources/read",
      params: { uri: "file:///etc/motd", _meta: envelope },
    };
    const readHeaders = {
      "mcp-protocol-version": MODERN,
      "mcp-method": "resources/read",
      "mcp-name": "file:///etc/motd",
    };
    expect((await send(read, readHeaders)).status).toBe(200);
    expect((await gw.auditRecords(1)).at(-1)).toMatchObject({ resource: "file:///etc/motd" });
    const get = {
      jsonrpc: "2.0",
      id: 13,
      method: "prompts/get",
      params: { name: "greet", _meta: envelope },
    };
    const getHeaders = {
      "mcp-protocol-version": MODERN,
      "mcp-method": "prompts/get",
      "mcp-name": "greet",
    };
    expect((await send(get, getHeaders)).status).toBe(200);
    expect((await gw.auditRecords(1)).at(-1)).toMatchObject({ prompt: "greet" });
  });

  it("accepts an Mcp-Name in the base64 form", async () => {
    const { body, headers } = modernCall("echo");
    const encoded = `=?base64?${Buffer.from("echo").toString("base64")}?=`;
    expect((await send(body, { ...headers, "mcp-name": encoded })).status).toBe(200);
  });

  it("is refused with -32020, nothing forwarded, when Mcp-Method disagrees or is missing", async () => {
    const { body, headers } = modernCall();
    expect(await expectMismatch(body, { ...headers, "mcp-method": "tools/list" })).toContain(
      "Mcp-Method header names tools/list",
    );
    expect(await expectMismatch(body, { ...headers, "mcp-method": undefined })).toContain(
      "Mcp-Method header is absent",
    );
  });

  it("is refused when Mcp-Name names another tool, is missing, or is badly encoded", async () => {
    const { body, headers } = modernCall("delete_everything");
    expect(await expectMismatch(body, { ...headers, "mcp-name": "echo" })).toContain(
      "the body names delete_everything but the Mcp-Name header names echo",
    );
    expect(await expectMismatch(body, { ...headers, "mcp-name": undefined })).toContain(
      "Mcp-Name header is absent",
    );
    expect(await expectMismatch(body, { ...headers, "mcp-name": "=?base64?!!!?=" })).toContain(
      "invalid Base64",
    );
  });

  it("is refused when MCP-Protocol-Version disagrees with the _meta version, or is missing", async () => {
    const { body, headers } = modernCall();
    expect(
      await expectMismatch(body, { ...headers, "mcp-protocol-version": "2026-09-30" }),
    ).toContain("MCP-Protocol-Version header names 2026-09-30");
    const without = await send(body, { ...headers, "mcp-protocol-version": undefined });
    expect(without.status).toBe(400);
    expect(JSON.parse(without.text).error.code).toBe(-32020);
  });

  it("is refused with -32602 when its header names 2026-07-28 and its body has no _meta version", async () => {
    const before = forwarded;
    const list = { jsonrpc: "2.0", id: 4, method: "tools/list" };
    const { status, text } = await send(list, {
      "mcp-protocol-version": MODERN,
      "mcp-method": "tools/list",
    });
    expect(status).toBe(400);
    expect(JSON.parse(text)).toMatchObject({
      id: 4,
      error: { code: -32602, data: { error: "invalid_envelope" } },
    });
    expect(forwarded).toBe(before);
  });

  it("refuses a session-era initialize that claims the new era in its header", async () => {
    const before = forwarded;
    const { status, text } = await send(INITIALIZE, { "mcp-protocol-version": MODERN });
    expect(status).toBe(400);
    expect(JSON.parse(text)).toMatchObject({ id: 1, error: { code: -32020 } });
    expect(forwarded).toBe(before);
  });

  it("is answered 401 before its headers are judged, to a caller without credentials", async () => {
    const { body, headers } = modernCall();
    const { status } = await send(body, { ...headers, "mcp-method": "tools/list" }, "/mcp", null);
    expect(status).toBe(401);
  });
});

describe("Mcp-Param-* headers", () => {
  const envelope = { "io.modelcontextprotocol/protocolVersion": MODERN };
  const weather = (args: Record<string, unknown>) => ({
    jsonrpc: "2.0",
    id: 21,
    method: "tools/call",
    params: { name: "get_weather", arguments: args, _meta: envelope },
  });
  const headers = (extra: Record<string, string | undefined>) => ({
    "mcp-protocol-version": MODERN,
    "mcp-method": "tools/call",
    "mcp-name": "get_weather",
    ...extra,
  });

  it("are checked against the arguments once the tool's listing has passed through", async () => {
    const list = { jsonrpc: "2.0", id: 20, method: "tools/list", params: { _meta: envelope } };
    const listed = await send(list, { "mcp-protocol-version": MODERN, "mcp-method": "tools/list" });
    expect(JSON.parse(listed.text).result.tools[0].name).toBe("get_weather");

    const good = headers({ "mcp-param-region": "eu-west", "mcp-param-days": "3.0" });
    expect((await send(weather({ region: "eu-west", days: 3 }), good)).status).toBe(200);
    const encoded = `=?base64?${Buffer.from("eu-west").toString("base64")}?=`;
    const base64 = headers({ "mcp-param-region": encoded, "mcp-param-days": "3" });
    expect((await send(weather({ region: "eu-west", days: 3 }), base64)).status).toBe(200);
    // No value, no header needed.
    expect((await send(weather({ days: 3 }), headers({ "mcp-param-days": "3" }))).status).toBe(200);

    expect(
      await expectMismatch(
        weather({ region: "us-east", days: 3 }),
        headers({ "mcp-param-region": "eu-west", "mcp-param-days": "3" }),
      ),
    ).toContain('Mcp-Param-Region header says "eu-west"');
    expect(
      await expectMismatch(
        weather({ region: "eu-west", days: 3 }),
        headers({ "mcp-param-region": "eu-west" }),
      ),
    ).toContain("Mcp-Param-Days header is absent");
  });
});

describe("a route with protocol.min_version 2026-07-28", () => {
  it("serves 2026-07-28 requests", async () => {
    const { body, headers } = modernCall();
    expect((await send(body, headers, MODERN_ONLY)).status).toBe(200);
  });

  it("refuses a session-era initialize with -32022 naming the versions it serves", async () => {
    const before = forwarded;
    const { status, text } = await send(INITIALIZE, {}, MODERN_ONLY);
    expect(status).toBe(400);
    expect(JSON.parse(text)).toMatchObject({
      id: 1,
      error: {
        code: -32022,
        data: {
          supported: [MODERN],
          requested: "2025-06-18",
          error: "unsupported_protocol_version",
        },
      },
    });
    expect(forwarded).toBe(before);
    const record = (await gw.auditRecords(1)).at(-1);
    expect(record).toMatchObject({
      route: MODERN_ONLY,
      error: "unsupported_protocol_version",
      protocol_version: "2025-06-18",
    });
  });

  it("refuses the session era's GET stream with 405", async () => {
    const res = await fetch(`${origin}${MODERN_ONLY}`, {
      headers: { authorization: `Bearer ${KEY}`, accept: "text/event-stream" },
    });
    expect(res.status).toBe(405);
    await res.text();
  });
});

describe("subscriptions/listen", () => {
  it("is held open as a stream and closed when the gateway shuts down, without waiting for shutdown_timeout", async () => {
    let opened: () => void = () => {};
    const listening = new Promise<void>((resolve) => {
      opened = resolve;
    });
    const held = await startHttpServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(
        `data: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/tools/list_changed" })}\n\n`,
      );
      opened();
    });
    const local = await startGateway({
      upstream: { url: held.url },
      auth: { keys: [{ id: "era", hash: await cheapHash(KEY) }] },
      shutdown_timeout: "30s",
    });
    const body = {
      jsonrpc: "2.0",
      id: 5,
      method: "subscriptions/listen",
      params: { _meta: { "io.modelcontextprotocol/protocolVersion": MODERN } },
    };
    const res = await fetch(local.url, {
      method: "POST",
      headers: {
        ...POST_HEADERS,
        authorization: `Bearer ${KEY}`,
        "mcp-protocol-version": MODERN,
        "mcp-method": "subscriptions/listen",
      },
      body: JSON.stringify(body),
    });
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    await listening;
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain("list_changed");
    const started = Date.now();
    await local.stop();
    expect(Date.now() - started).toBeLessThan(10_000);
    await expect(reader.read()).rejects.toThrow();
    await held.close();
  });
});
