/**
 * What of a client's request head reaches an HTTP upstream (G1), and what the gateway
 * advertises as its own URL when a client forges its Host (G19). Requests go over raw sockets:
 * fetch cannot send Host, Connection or Proxy-Authorization as given.
 */
import type { IncomingHttpHeaders } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type RunningServer,
  startEmptyResultUpstream,
  startHttpServer,
} from "../helpers/fake-upstreams.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { type JwksServer, makeKey, startJwksServer } from "../helpers/jwks-server.js";
import { cheapHash } from "../helpers/keys.js";
import { rawRequest, statusOf } from "../helpers/raw-http.js";

const KEY = "header-hygiene-key-0123456789";
const PING = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" });
const AUDIENCE = "mcpgw-header-hygiene";

/** A raw HTTP/1.1 request that closes its connection after the answer. */
function head(requestLine: string, fields: string[], body = ""): string {
  const length = body === "" ? [] : [`Content-Length: ${Buffer.byteLength(body)}`];
  return [requestLine, ...fields, ...length, "", body].join("\r\n");
}

function bodyOf(answer: string): string {
  return answer.slice(answer.indexOf("\r\n\r\n") + 4);
}

function headerOf(answer: string, name: string): string | undefined {
  const head = answer.slice(0, answer.indexOf("\r\n\r\n"));
  const line = head
    .split("\r\n")
    .find((field) => field.toLowerCase().startsWith(`${name.toLowerCase()}:`));
  return line?.slice(name.length + 1).trim();
}

describe("the request head an HTTP upstream receives", () => {
  let upstream: RunningServer;
  let gw: TestGateway;
  let port: number;
  let gatewayHost: string;

  beforeAll(async () => {
    upstream = await startEmptyResultUpstream();
    gw = await startGateway({
      upstream: { url: upstream.url },
      auth: { keys: [{ id: "hygiene", hash: await cheapHash(KEY) }] },
    });
    port = gw.gateway.address.port;
    gatewayHost = new URL(gw.url).host;
  });

  afterAll(async () => {
    await gw.stop();
    await upstream.close();
  });

  /** POSTs a ping with `fields` added to an authenticated head; the headers the upstream saw. */
  async function forwarded(fields: string[]): Promise<IncomingHttpHeaders> {
    const before = upstream.requests.length;
    const answer = await rawRequest(
      port,
      head(
        "POST /mcp HTTP/1.1",
        [
          `Authorization: Bearer ${KEY}`,
          "Content-Type: application/json",
          "Accept: application/json, text/event-stream",
          ...fields,
        ],
        PING,
      ),
    );
    expect(statusOf(answer)).toBe(200);
    expect(upstream.requests.length).toBe(before + 1);
    return (upstream.requests.at(-1) as { headers: IncomingHttpHeaders }).headers;
  }

  it("drops Proxy-Authorization, hop-by-hop headers and every header that Connection names", async () => {
    const seen = await forwarded([
      `Host: ${gatewayHost}`,
      "Connection: close, X-Secret, x-other-secret",
      "X-Secret: connection-listed-value",
      "X-Other-Secret: another-connection-listed-value",
      "Proxy-Authorization: Basic cHJveHk6cHJveHktcGFzc3dvcmQ=",
      "Proxy-Connection: keep-alive",
      "Keep-Alive: timeout=5",
      "TE: trailers",
      "X-Kept: end-to-end",
    ]);
    // An end-to-end header goes through: what is missing below was dropped, not lost.
    expect(seen["x-kept"]).toBe("end-to-end");
    for (const name of [
      "proxy-authorization",
      "x-secret",
      "x-other-secret",
      "proxy-connection",
      "keep-alive",
      "te",
      "authorization",
    ]) {
      expect(seen[name], name).toBeUndefined();
    }
    // The upstream connection is the gateway's own: the client's Connection list is not relayed.
    expect(String(seen.connection ?? "")).not.toMatch(/secret|close/i);
    const everything = JSON.stringify(seen);
    for (const secret of ["connection-listed-value", "cHJveHk6cHJveHktcGFzc3dvcmQ=", KEY]) {
      expect(everything).not.toContain(secret);
    }
  });

  it("replaces the X-Forwarded-Host and X-Forwarded-Proto an untrusted client sends with its own", async () => {
    const seen = await forwarded([
      `Host: ${gatewayHost}`,
      "X-Forwarded-Host: forged.example",
      "X-Forwarded-Proto: https",
      "X-Forwarded-For: 203.0.113.9",
      "Connection: close",
    ]);
    expect(seen["x-forwarded-host"]).toBe(gatewayHost);
    expect(seen["x-forwarded-proto"]).toBe("http");
    // X-Forwarded-For keeps what came and appends the peer the gateway saw.
    expect(seen["x-forwarded-for"]).toBe("203.0.113.9, 127.0.0.1");
    expect(JSON.stringify(seen)).not.toContain("forged.example");
  });
});

describe("the URL the gateway advertises as its own", () => {
  let upstream: RunningServer;
  let jwks: JwksServer;

  beforeAll(async () => {
    [upstream, jwks] = await Promise.all([
      startHttpServer((_req, res) => res.writeHead(500).end()),
      startJwksServer([await makeKey("ES256", "host-1")]),
    ]);
  });

  afterAll(async () => {
    await upstream.close();
    await jwks.close();
  });

  const oauth = () => ({
    enabled: true,
    issuer: jwks.issuer,
    audience: AUDIENCE,
    jwks_url: jwks.url,
  });

  /** The metadata's resource and the challenge's resource_metadata, asked with `fields`. */
  async function advertised(gw: TestGateway, fields: string[]) {
    const port = gw.gateway.address.port;
    const urls: string[] = [];
    for (const path of [
      "/.well-known/oauth-protected-resource",
      "/.well-known/oauth-protected-resource/mcp",
    ]) {
      const answer = await rawRequest(
        port,
        head(`GET ${path} HTTP/1.1`, [...fields, "Connection: close"]),
      );
      expect(statusOf(answer)).toBe(200);
      urls.push((JSON.parse(bodyOf(answer)) as { resource: string }).resource);
    }
    const challenged = await rawRequest(
      port,
      head(
        "POST /mcp HTTP/1.1",
        [...fields, "Content-Type: application/json", "Connection: close"],
        PING,
      ),
    );
    expect(statusOf(challenged)).toBe(401);
    const challenge = headerOf(challenged, "www-authenticate") ?? "";
    urls.push(/resource_metadata="([^"]+)"/.exec(challenge)?.[1] ?? challenge);
    return urls;
  }

  it("never takes its advertised URL from a forged Host header, not even from a trusted proxy", async () => {
    const forgedHost = ["Host: attacker.example:8443"];
    for (const trust_proxy of [[], ["127.0.0.0/8"]]) {
      const gw = await startGateway({
        upstream: { url: upstream.url },
        auth: { oauth: oauth() },
        trust_proxy,
      });
      const origin = new URL(gw.url).origin;
      const urls = await advertised(gw, forgedHost);
      expect(urls, `trust_proxy ${JSON.stringify(trust_proxy)}`).toEqual([
        gw.url,
        gw.url,
        `${origin}/.well-known/oauth-protected-resource`,
      ]);
      expect(JSON.stringify(urls)).not.toContain("attacker.example");
      await gw.stop();
    }
    expect(upstream.requests).toHaveLength(0);
  });
});
