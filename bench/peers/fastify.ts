/**
 * What a Node engineer would build instead of mcpgw, the fastify way: fastify 5 with
 * `@fastify/reply-from` (undici underneath) in front of the MCP endpoint, each request's
 * `Authorization: Bearer` JWT verified with jose's `jwtVerify` against a `createRemoteJWKSet`
 * (issuer, audience; no cache of verified tokens, as the jose docs show it), and one pino line
 * per request to a file. No JSON-RPC parsing, metrics, limits or reloads.
 *
 * Usage: node dist/bench/peers/fastify.js <upstream URL> <JWKS URL> <issuer> <audience> <log file>
 *        (prints {"port":N} once listening on 127.0.0.1)
 */
import replyFrom from "@fastify/reply-from";
import Fastify from "fastify";
import { announcePort } from "../protocol.js";
import { peerSettings, verifyBearer } from "./peer.js";

const settings = peerSettings("fastify");
const app = Fastify({ logger: false });
await app.register(replyFrom, { base: settings.upstream.origin });

app.all(settings.upstream.pathname, async (request, reply) => {
  const started = performance.now();
  const subject = await verifyBearer(settings, request.headers.authorization);
  if (subject === undefined) {
    settings.log.info({ status: 401, method: request.method }, "refused");
    return reply.code(401).header("www-authenticate", 'Bearer error="invalid_token"').send();
  }
  return reply.from(settings.upstream.pathname, {
    rewriteRequestHeaders: (_request, headers) => {
      const { authorization: _, ...rest } = headers;
      return rest;
    },
    onResponse: (_request, response, res) => {
      settings.log.info(
        { status: res.statusCode, sub: subject, ms: performance.now() - started },
        "proxied",
      );
      response.send(res.stream);
    },
  });
});

// POST bodies are relayed as they came (JSON or not).
app.removeAllContentTypeParsers();
app.addContentTypeParser("*", (_request, payload, done) => done(null, payload));

await app.listen({ host: "127.0.0.1", port: 0 });
const address = app.server.address();
announcePort(typeof address === "object" && address ? address.port : 0);
