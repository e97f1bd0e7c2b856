/**
 * The Origin check against DNS rebinding, and pages served from the gateway's own origin:
 * a same-origin request passes when the host is the gateway's own (loopback, or a configured
 * public URL's); the same request under a host an attacker controls does not.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { INITIALIZE } from "../helpers/mcp-client.js";
import { rawRequest, statusOf } from "../helpers/raw-http.js";

const KEY = "origin-suite-key-0123456789";

let upstream: ExampleServer;
let gw: TestGateway;
let port: number;

beforeAll(async () => {
  upstream = await startExampleServer();
  gw = await startGateway({
    upstream: { url: upstream.url },
    routes: [
      {
        path: "/public/mcp",
        upstream: { url: upstream.url },
        oauth: { public_url: "https://gw.example.com/public/mcp" },
      },
    ],
    auth: { keys: [{ id: "origin", hash: await cheapHash(KEY) }] },
  });
  port = Number(new URL(gw.url).port);
});

afterAll(async () => {
  await gw.stop();
  await upstream.close();
});

/** An initialize with `host` and `origin` as given (fetch cannot set Host). */
async function initialize(path: string, host: string, origin: string): Promise<number> {
  const body = INITIALIZE;
  const answer = await rawRequest(
    port,
    [
      `POST ${path} HTTP/1.1`,
      `Host: ${host}`,
      `Origin: ${origin}`,
      `Authorization: Bearer ${KEY}`,
      "Content-Type: application/json",
      "Accept: application/json, text/event-stream",
      `Content-Length: ${Buffer.byteLength(body)}`,
      "Connection: close",
      "",
      body,
    ].join("\r\n"),
  );
  return statusOf(answer);
}

describe("the Origin check", () => {
  it("admits a page of the gateway's own origin on a loopback host", async () => {
    expect(await initialize("/mcp", `127.0.0.1:${port}`, `http://127.0.0.1:${port}`)).toBe(200);
    expect(await initialize("/mcp", `localhost:${port}`, `http://localhost:${port}`)).toBe(200);
  });

  it("admits a page of a configured public URL's origin", async () => {
    expect(await initialize("/public/mcp", "gw.example.com", "https://gw.example.com")).toBe(200);
  });

  it("refuses a rebound name: Origin and Host agree, but the host is not the gateway's", async () => {
    expect(
      await initialize("/mcp", `attacker.example:${port}`, `http://attacker.example:${port}`),
    ).toBe(403);
    expect(await initialize("/mcp", `127.0.0.1:${port}`, "http://attacker.example")).toBe(403);
  });
});
