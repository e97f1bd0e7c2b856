/**
 * Strict HTTP (G22, G25): a malformed header line is refused by the parser, and a body that
 * arrives too slowly is cut off at limits.request_timeout; in neither case does anything reach
 * the upstream, although the request carries a valid key.
 */
import { once } from "node:events";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningServer, startEmptyResultUpstream } from "../helpers/fake-upstreams.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { rawRequest, statusOf } from "../helpers/raw-http.js";

const KEY = "slow-and-malformed-key-0123456789";
const PING = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" });

describe("strict HTTP in front of an upstream", () => {
  let upstream: RunningServer;
  let gw: TestGateway;
  let port: number;

  beforeAll(async () => {
    upstream = await startEmptyResultUpstream();
    gw = await startGateway({
      upstream: { url: upstream.url },
      auth: { keys: [{ id: "strict", hash: await cheapHash(KEY) }] },
      limits: { headers_timeout: "500ms", request_timeout: "1s" },
    });
    port = gw.gateway.address.port;
  });

  afterAll(async () => {
    await gw.stop();
    await upstream.close();
  });

  /** An authenticated ping whose head carries `fields` after the usual ones. */
  const ping = (fields: string[]) =>
    [
      "POST /mcp HTTP/1.1",
      "Host: 127.0.0.1",
      `Authorization: Bearer ${KEY}`,
      "Content-Type: application/json",
      "Accept: application/json, text/event-stream",
      ...fields,
      `Content-Length: ${PING.length}`,
      "Connection: close",
      "",
      PING,
    ].join("\r\n");

  it("forwards the well-formed request these tests break", async () => {
    const before = upstream.requests.length;
    expect(statusOf(await rawRequest(port, ping(["X-Fine: yes"])))).toBe(200);
    expect(upstream.requests.length).toBe(before + 1);
  });

  it.each([
    ["a line without a colon", "X-Broken header line"],
    ["a space in the field name", "X Broken: 1"],
    ["a space before the colon", "X-Broken : 1"],
    ["a bare CR in the value", "X-Broken: a\rb"],
    ["a NUL in the value", "X-Broken: a\u0000b"],
    ["an obsolete line folding", "X-Broken: a\r\n folded"],
  ])(
    "refuses a malformed header line (%s) with 400, closes, and forwards nothing",
    async (_name, line) => {
      const before = upstream.requests.length;
      const answer = await rawRequest(port, ping([line]));
      expect(statusOf(answer)).toBe(400);
      expect(answer).toMatch(/\r\nConnection: close\r\n/i);
      expect(answer).toContain('"error":"bad_request"');
      expect(upstream.requests.length).toBe(before);
    },
  );

  it("cuts off a body sent too slowly at request_timeout with 408, and forwards nothing", async () => {
    const before = upstream.requests.length;
    const socket = connect(port, "127.0.0.1");
    let answer = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      answer += chunk;
    });
    const started = Date.now();
    socket.write(
      [
        "POST /mcp HTTP/1.1",
        "Host: 127.0.0.1",
        `Authorization: Bearer ${KEY}`,
        "Content-Type: application/json",
        "Accept: application/json, text/event-stream",
        `Content-Length: ${PING.length}`,
        "",
        PING.slice(0, 5),
      ].join("\r\n"),
    );
    // A byte every 200 ms: the client never stops sending, so only the deadline for the whole
    // request can cut it off (the body would take 7 s, and is never finished).
    let sent = 5;
    const dribble = setInterval(() => {
      if (sent < PING.length - 1 && socket.writable) socket.write(PING[sent++] as string);
    }, 200);
    await once(socket, "close");
    clearInterval(dribble);
    const elapsed = Date.now() - started;
    expect(statusOf(answer)).toBe(408);
    expect(answer).toContain('"error":"bad_request"');
    expect(sent).toBeLessThan(PING.length - 1);
    // Cut at request_timeout (1 s, timers checked every 500 ms), not at the end of the body.
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(3_000);
    expect(upstream.requests.length).toBe(before);
  }, 5_000); // Without the cut the connection stays open: fail at 5 s, not at the default 30 s.
});
