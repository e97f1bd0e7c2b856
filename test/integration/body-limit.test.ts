/**
 * A body refused as too large while the client is still sending it: the 413 must reach the
 * client (nginx's lingering close), from Node's http.request, fetch and curl alike, and the
 * gateway's reading of what follows must stay bounded.
 */
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { request } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { LINGER_MAX_BYTES, LINGER_MS } from "../../src/http/body.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { POST_HEADERS } from "../helpers/mcp-client.js";

const KEY = "test-key-body-limit-0123456789";
const MiB = 1024 * 1024;
/** 12 MiB against the default limit of 4 MiB, as the client sent. */
const BODY = Buffer.alloc(12 * MiB, "x");

let upstream: ExampleServer;
let gw: TestGateway;
let forwarded = 0;

beforeAll(async () => {
  upstream = await startExampleServer({ onRequest: () => forwarded++ });
  gw = await startGateway({
    upstream: { url: upstream.url },
    auth: { keys: [{ id: "body", hash: await cheapHash(KEY) }] },
  });
});

afterAll(async () => {
  await gw.stop();
  await upstream.close();
});

const HEADERS = { ...POST_HEADERS, authorization: `Bearer ${KEY}` };

interface Outcome {
  status: number | undefined;
  error: string | undefined;
  /** Bytes the client had written when the connection ended. */
  written: number;
}

/**
 * Node's http.request writing `total` bytes in 64 KiB chunks, as fast as the socket takes;
 * resolves once the request is over (its socket closed), with any error it met on the way.
 */
function nodeRequest(total: number, declared = total): Promise<Outcome> {
  return new Promise((resolve) => {
    let status: number | undefined;
    let error: string | undefined;
    let written = 0;
    const req = request(gw.url, {
      method: "POST",
      headers: { ...HEADERS, "content-length": String(declared) },
      agent: false,
    });
    req.on("response", (res) => {
      status = res.statusCode;
      res.resume();
    });
    req.on("error", (failure: NodeJS.ErrnoException) => {
      error ??= failure.code ?? failure.message;
    });
    req.on("close", () => resolve({ status, error, written }));
    const chunk = Buffer.alloc(64 * 1024, "x");
    const pump = () => {
      while (written < total) {
        written += chunk.length;
        if (!req.write(chunk)) {
          req.once("drain", pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

describe("a body over limits.max_body_bytes, refused while it is being sent", () => {
  it("reaches Node's http.request as a 413, and nothing reaches the upstream", async () => {
    const before = forwarded;
    for (let attempt = 0; attempt < 3; attempt++) {
      // Node's client stops sending once it has the whole answer (Connection: close); what
      // matters is that it got the answer, not a reset.
      const outcome = await nodeRequest(BODY.length);
      expect(outcome).toMatchObject({ status: 413, error: undefined });
    }
    expect(forwarded).toBe(before);
  });

  it("reaches fetch as a 413", async () => {
    const res = await fetch(gw.url, { method: "POST", headers: HEADERS, body: BODY });
    expect(res.status).toBe(413);
    expect(res.headers.get("connection")).toBe("close");
    expect(await res.json()).toMatchObject({ error: "body_too_large" });
  });

  it("reaches curl as a 413", async () => {
    const file = path.join(tmpdir(), `mcpgw-body-${process.pid}.bin`);
    await writeFile(file, BODY);
    const { stdout } = await promisify(execFile)("curl", [
      "-sS",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "-H",
      `authorization: Bearer ${KEY}`,
      "-H",
      "content-type: application/json",
      "-H",
      "accept: application/json, text/event-stream",
      "--data-binary",
      `@${file}`,
      gw.url,
    ]);
    expect(stdout).toBe("413");
  });

  it("stops discarding after LINGER_MAX_BYTES, and after LINGER_MS", async () => {
    // A client that declares far more and keeps sending whatever the answer says.
    const flood = await rawUpload(LINGER_MAX_BYTES * 3, Number.POSITIVE_INFINITY);
    expect(flood.response).toMatch(/^HTTP\/1\.1 413 /);
    expect(flood.written).toBeGreaterThanOrEqual(LINGER_MAX_BYTES);
    expect(flood.written).toBeLessThan(LINGER_MAX_BYTES + 32 * MiB);
    // One that slows to a trickle and keeps the connection open.
    const trickle = await rawUpload(12 * MiB, 1 * MiB, true);
    expect(trickle.response).toMatch(/^HTTP\/1\.1 413 /);
    expect(trickle.closedAfterAnswerMs).toBeGreaterThanOrEqual(LINGER_MS - 100);
    expect(trickle.closedAfterAnswerMs).toBeLessThan(LINGER_MS + 2_000);
  });
});

interface RawOutcome {
  response: string;
  written: number;
  closedAfterAnswerMs: number;
}

/**
 * A raw connection declaring `declared` bytes and writing `send` of them at once, then, with
 * `trickle`, a KiB every 100 ms until the gateway closes the connection.
 */
function rawUpload(declared: number, send: number, trickle = false): Promise<RawOutcome> {
  const url = new URL(gw.url);
  return new Promise((resolve) => {
    // Half-open: it goes on sending after the gateway's FIN, as a client that ignores the answer would.
    const socket = connect({ port: Number(url.port), host: url.hostname, allowHalfOpen: true });
    let response = "";
    let written = 0;
    let answeredAt = 0;
    socket.on("data", (chunk: Buffer) => {
      answeredAt ||= performance.now();
      response += chunk.toString("latin1");
    });
    socket.on("error", () => {});
    socket.on("close", () =>
      resolve({ response, written, closedAfterAnswerMs: performance.now() - answeredAt }),
    );
    socket.write(
      `POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: Bearer ${KEY}\r\n` +
        `Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n` +
        `Content-Length: ${declared}\r\n\r\n`,
    );
    const chunk = Buffer.alloc(256 * 1024, "x");
    const pump = () => {
      while (written < send && !socket.destroyed) {
        written += chunk.length;
        if (!socket.write(chunk)) {
          socket.once("drain", pump);
          return;
        }
      }
      if (trickle) {
        const drip = setInterval(() => {
          if (socket.destroyed) clearInterval(drip);
          else socket.write(Buffer.alloc(1024, "x"));
        }, 100);
        socket.once("close", () => clearInterval(drip));
      }
    };
    pump();
  });
}
