import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { get as httpGet, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { setTimeout as delay } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { type RunningServer, startHttpServer, unusedPortUrl } from "../helpers/fake-upstreams.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { POST_HEADERS, TOOLS_LIST } from "../helpers/mcp-client.js";
import { rawRequest, statusOf } from "../helpers/raw-http.js";

const KEY = "test-key-failures-0123456789";
const AUTH = { authorization: `Bearer ${KEY}` };

async function keyConfig() {
  return { keys: [{ id: "failures", hash: await cheapHash(KEY) }] };
}

describe("bad client input", () => {
  let upstream: ExampleServer;
  let gw: TestGateway;
  let forwarded = 0;
  let port: number;

  beforeAll(async () => {
    upstream = await startExampleServer({ onRequest: () => forwarded++ });
    gw = await startGateway({
      upstream: { url: upstream.url },
      auth: await keyConfig(),
      limits: { max_body_bytes: "1KiB", max_header_bytes: "12KiB", headers_timeout: "300ms" },
    });
    port = gw.gateway.address.port;
  });

  afterAll(async () => {
    await gw.stop();
    await upstream.close();
  });

  const post = (headers: Record<string, string>, body: string = TOOLS_LIST) =>
    fetch(gw.url, { method: "POST", headers: { ...POST_HEADERS, ...headers }, body });

  const lastAudit = async () => {
    const records = await gw.auditRecords(1);
    return records.at(-1);
  };

  it("answers a request without credentials 401 with a bare Bearer challenge", async () => {
    const res = await post({});
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe('Bearer realm="mcpgw"');
    expect(await res.json()).toMatchObject({ error: "unauthorized" });
    expect(await lastAudit()).toMatchObject({
      method: "tools/list",
      action: "deny",
      auth_result: "missing",
      status: 401,
    });
  });

  it("answers Authorization without a scheme 401 invalid_token (malformed)", async () => {
    const res = await post({ authorization: KEY });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toMatch(
      /^Bearer realm="mcpgw", error="invalid_token", error_description="[^"]+"$/,
    );
    expect(await lastAudit()).toMatchObject({ auth_result: "malformed", status: 401 });
  });

  it("answers the Basic scheme with the bare challenge (RFC 6750 §3.1)", async () => {
    const res = await post({
      authorization: `Basic ${Buffer.from(`u:${KEY}`).toString("base64")}`,
    });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe('Bearer realm="mcpgw"');
    expect(await lastAudit()).toMatchObject({ auth_result: "missing" });
  });

  it("refuses a 10 KB token without hashing it", async () => {
    const runs = () => gw.logs.filter((line) => line.msg === "argon2 verification").length;
    const before = runs();
    const res = await post({ authorization: `Bearer ${"a".repeat(10 * 1024)}` });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toContain('error="invalid_token"');
    expect(await lastAudit()).toMatchObject({ auth_result: "malformed" });
    expect(runs()).toBe(before);
  });

  it("accepts two spaces after Bearer, as RFC 6750 §2.1 (1*SP) allows", async () => {
    const res = await post({ authorization: `Bearer  ${KEY}` });
    expect(res.status).toBe(200);
    expect(await lastAudit()).toMatchObject({ auth_result: "ok", key_id: "failures" });
  });

  it("refuses an unknown key 401 invalid_token", async () => {
    const res = await post({ authorization: "Bearer not-a-configured-key" });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toContain('error="invalid_token"');
    expect(await lastAudit()).toMatchObject({ auth_type: "api_key", auth_result: "unknown_key" });
  });

  it("answers invalid JSON 400 with JSON-RPC -32700 and forwards nothing", async () => {
    const before = forwarded;
    const res = await post(AUTH, '{"jsonrpc": "2.0", "method": ');
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ jsonrpc: "2.0", id: null, error: { code: -32700 } });
    expect(forwarded).toBe(before);
    expect(await lastAudit()).toMatchObject({ status: 400, auth_result: "ok", method: null });
  });

  it("answers an oversized body 413 and forwards nothing, with or without Content-Length", async () => {
    const before = forwarded;
    const big = JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "tools/list",
      params: { pad: "x".repeat(2048) },
    });
    const declared = await post(AUTH, big);
    expect(declared.status).toBe(413);
    const chunked = await rawRequest(
      port,
      `POST /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n`,
    );
    expect(statusOf(chunked)).toBe(413);
    expect(forwarded).toBe(before);
  });

  it("refuses Content-Length with Transfer-Encoding, and duplicate Content-Length, with 400", async () => {
    const before = forwarded;
    const smuggle = await rawRequest(
      port,
      `POST /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    );
    expect(statusOf(smuggle)).toBe(400);
    const duplicate = await rawRequest(
      port,
      `POST /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}`,
    );
    expect(statusOf(duplicate)).toBe(400);
    expect(forwarded).toBe(before);
  });

  it("answers a request head over max_header_bytes 431", async () => {
    const answer = await rawRequest(
      port,
      `POST /mcp HTTP/1.1\r\nHost: x\r\nX-Padding: ${"p".repeat(16 * 1024)}\r\nContent-Length: 2\r\n\r\n{}`,
    );
    expect(statusOf(answer)).toBe(431);
  });

  it("cuts off a client that sends its headers too slowly (headers_timeout)", async () => {
    const socket = connect(port, "127.0.0.1");
    socket.write("POST /mcp HTTP/1.1\r\nHost: x\r\n");
    let answer = "";
    socket.on("data", (chunk) => {
      answer += chunk;
    });
    await once(socket, "close");
    expect(statusOf(answer)).toBe(408);
  });

  it("answers other methods 405 with Allow, other paths 404, and serves health", async () => {
    const put = await fetch(gw.url, { method: "PUT", headers: AUTH, body: "{}" });
    expect(put.status).toBe(405);
    expect(put.headers.get("allow")).toBe("GET, POST, DELETE");
    expect((await fetch(new URL("/other", gw.url))).status).toBe(404);
    expect((await fetch(new URL("/healthz", gw.url))).status).toBe(200);
    expect((await fetch(new URL("/readyz", gw.url))).status).toBe(200);
  });
});

describe("upstream failures", () => {
  const sockets = new Set<RunningServer>();
  const started = async (handler: Parameters<typeof startHttpServer>[0]) => {
    const server = await startHttpServer(handler);
    sockets.add(server);
    return server;
  };
  afterAll(async () => {
    for (const server of sockets) await server.close();
  });

  async function gatewayFor(url: string, timeout = "60s") {
    return startGateway({ upstream: { url, timeout }, auth: await keyConfig() });
  }

  it("answers 502 with a JSON-RPC error when the upstream is down", async () => {
    const gw = await gatewayFor(await unusedPortUrl());
    const res = await fetch(gw.url, {
      method: "POST",
      headers: { ...POST_HEADERS, ...AUTH },
      body: TOOLS_LIST,
    });
    expect(res.status).toBe(502);
    expect(await res.json()).toMatchObject({
      jsonrpc: "2.0",
      id: 7,
      error: { code: -32000, data: { error: "upstream_unreachable" } },
    });
    const [record] = await gw.auditRecords(1);
    expect(record).toMatchObject({ status: 502, action: "allow", error: "upstream_unreachable" });
    await gw.stop();
  });

  it("answers 504 when the upstream sends no response headers within upstream.timeout", async () => {
    const silent = await started(() => {});
    const gw = await gatewayFor(silent.url, "200ms");
    const res = await fetch(gw.url, { method: "GET", headers: AUTH });
    expect(res.status).toBe(504);
    expect(await res.json()).toMatchObject({ error: "upstream_timeout" });
    await gw.stop();
  });

  it("aborts the client's response when the upstream dies mid-stream, and keeps serving", async () => {
    const dying = await started((req, res) => {
      if (req.method === "GET") {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write('event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message"}\n\n');
        setImmediate(() => res.socket?.destroy());
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"jsonrpc":"2.0","id":7,"result":{"tools":[]}}');
    });
    const gw = await gatewayFor(dying.url);
    const res = await fetch(gw.url, { method: "GET", headers: AUTH });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-accel-buffering")).toBe("no");
    await expect(res.text()).rejects.toThrow();
    const after = await fetch(gw.url, {
      method: "POST",
      headers: { ...POST_HEADERS, ...AUTH },
      body: TOOLS_LIST,
    });
    expect(after.status).toBe(200);
    const records = await gw.auditRecords(2);
    expect(records[0]).toMatchObject({ method: "GET", status: 200, error: "upstream_aborted" });
    await gw.stop();
  });

  it("cancels the upstream request when the client disconnects", async () => {
    let upstreamClosed: () => void = () => {};
    const closed = new Promise<void>((resolve) => {
      upstreamClosed = resolve;
    });
    const streaming = await started((_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write(": first\n\n");
      res.on("close", upstreamClosed);
    });
    const gw = await gatewayFor(streaming.url);
    const client = new AbortController();
    const res = await fetch(gw.url, { method: "GET", headers: AUTH, signal: client.signal });
    const reader = res.body?.getReader();
    await reader?.read();
    client.abort();
    await closed;
    const [record] = await gw.auditRecords(1);
    expect(record).toMatchObject({ method: "GET", error: "client_aborted" });
    await gw.stop();
  });

  it("cancels the upstream request when the client leaves before the upstream answers", async () => {
    let arrived: () => void = () => {};
    const requestArrived = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    let upstreamClosed: () => void = () => {};
    const closed = new Promise<void>((resolve) => {
      upstreamClosed = resolve;
    });
    // Never answers: only a cancellation from the gateway ends this request.
    const silent = await started((req, res) => {
      res.on("close", upstreamClosed);
      req.resume();
      arrived();
    });
    const gw = await gatewayFor(silent.url);
    const client = new AbortController();
    const pending = fetch(gw.url, {
      method: "POST",
      headers: { ...POST_HEADERS, ...AUTH },
      body: TOOLS_LIST,
      signal: client.signal,
    }).catch((error: Error) => error);
    await requestArrived;
    client.abort();
    await closed;
    expect(await pending).toBeInstanceOf(Error);
    const [record] = await gw.auditRecords(1);
    expect(record).toMatchObject({ method: "tools/list", status: 499, error: "client_aborted" });
    await gw.stop();
  });

  it("relays a large response to a slow client at the client's pace, byte for byte", async () => {
    const total = 64 * 1024 * 1024;
    const chunk = randomBytes(64 * 1024);
    // How much the upstream had handed to its socket when it could write no more; undefined if
    // it sent everything while the client was not reading (the gateway buffered it all).
    let stalledAfter: (sent: number | undefined) => void = () => {};
    const stalled = new Promise<number | undefined>((resolve) => {
      stalledAfter = resolve;
    });
    const big = await started(async (_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": total });
      let sent = 0;
      while (sent < total) {
        sent += chunk.length;
        if (res.write(chunk)) continue;
        // Backpressure has no event of its own: a write buffer that does not drain for half a
        // second, while the client reads nothing, is the gateway holding the upstream back.
        const drained = await Promise.race([
          once(res, "drain").then(() => true),
          delay(500).then(() => false),
        ]);
        if (!drained) {
          stalledAfter(sent);
          await once(res, "drain");
        }
      }
      res.end();
      stalledAfter(undefined);
    });
    const gw = await gatewayFor(big.url);
    const response = await new Promise<IncomingMessage>((resolve, reject) =>
      httpGet(gw.url, { headers: AUTH, agent: false }, resolve).on("error", reject),
    );
    response.pause();
    const sentBeforeStall = await stalled;
    expect(sentBeforeStall).toBeDefined();
    expect(sentBeforeStall).toBeLessThan(total / 2);
    const digest = createHash("sha256");
    let received = 0;
    response.on("data", (data: Buffer) => {
      received += data.length;
      digest.update(data);
    });
    response.resume();
    await once(response, "end");
    expect(received).toBe(total);
    const expected = createHash("sha256");
    for (let sent = 0; sent < total; sent += chunk.length) expected.update(chunk);
    expect(digest.digest("hex")).toBe(expected.digest("hex"));
    const [record] = await gw.auditRecords(1);
    expect(record).toMatchObject({ method: "GET", status: 200 });
    expect(record?.error).toBeUndefined();
    await gw.stop();
  });

  it("streams SSE events as they arrive, not when the response ends", async () => {
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const slow = await started(async (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: one\n\n");
      await released;
      res.end("data: two\n\n");
    });
    const gw = await gatewayFor(slow.url);
    const res = await fetch(gw.url, { method: "GET", headers: AUTH });
    const reader = res.body?.getReader();
    const first = await reader?.read();
    // The first event arrived while the upstream still holds the response open.
    expect(new TextDecoder().decode(first?.value)).toBe("data: one\n\n");
    release();
    await reader?.cancel();
    await gw.stop();
    expect((slow.server.address() as AddressInfo).port).toBeGreaterThan(0);
  });
});
