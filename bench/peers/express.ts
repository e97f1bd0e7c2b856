/**
 * The same as bench/peers/fastify.ts, the express way: express 5 with
 * `http-proxy-middleware` (node-http-proxy underneath) in front of the MCP endpoint, jose's
 * `jwtVerify` with `createRemoteJWKSet` per request, one pino line per request to a file.
 *
 * Usage: node dist/bench/peers/express.js <upstream URL> <JWKS URL> <issuer> <audience> <log file>
 *        (prints {"port":N} once listening on 127.0.0.1)
 */
import { Agent } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import { createProxyMiddleware } from "http-proxy-middleware";
import { announcePort } from "../protocol.js";
import { peerSettings, verifyBearer } from "./peer.js";

const settings = peerSettings("express");
const app = express();
const proxy = createProxyMiddleware({
  target: settings.upstream.origin,
  changeOrigin: true,
  // Keep-alive to the upstream, as any tuned proxy has it (node-http-proxy's default opens a
  // connection per request).
  agent: new Agent({ keepAlive: true }),
  on: {
    proxyReq: (proxyRequest) => proxyRequest.removeHeader("authorization"),
  },
});

app.all(settings.upstream.pathname, async (request, response, next) => {
  const started = performance.now();
  const subject = await verifyBearer(settings, request.headers.authorization);
  if (subject === undefined) {
    settings.log.info({ status: 401, method: request.method }, "refused");
    response.status(401).set("www-authenticate", 'Bearer error="invalid_token"').end();
    return;
  }
  response.on("finish", () =>
    settings.log.info(
      { status: response.statusCode, sub: subject, ms: performance.now() - started },
      "proxied",
    ),
  );
  proxy(request, response, next);
});

const server = app.listen(0, "127.0.0.1", () => {
  announcePort((server.address() as AddressInfo).port);
});
