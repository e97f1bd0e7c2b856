/**
 * The MCP route's step list on its own: a real HTTP request, a generation built from config
 * text, no gateway, no upstream (the steps before `forward` only).
 */
import { once } from "node:events";
import { createServer, type IncomingMessage, request, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newAuditRecord } from "../../../src/audit/record.js";
import { AuthError } from "../../../src/auth/principal.js";
import { parseConfig } from "../../../src/config/load.js";
import { GatewayError } from "../../../src/errors.js";
import { createLogger } from "../../../src/log.js";
import { type Exchange, type PipelineContext, runSteps } from "../../../src/pipeline/exchange.js";
import { Generation } from "../../../src/runtime/generation.js";
import { Cancellation } from "../../../src/upstream/upstream.js";
import { cheapHash } from "../../helpers/keys.js";

const KEY = "pipeline-key-0123456789";

let keyed: Generation;
let open: Generation;
let failClosed: Generation;

async function generation(text: string): Promise<Generation> {
  return Generation.build(1, parseConfig(text, "/etc/mcpgw/test.yaml", {}), {
    log: createLogger("silent"),
  });
}

beforeAll(async () => {
  const upstream = "upstream:\n  url: http://127.0.0.1:9/mcp\n";
  const audit = "audit:\n  path: audit.jsonl\n";
  keyed = await generation(
    `${upstream}${audit}auth:\n  keys:\n    - id: k\n      hash: "${await cheapHash(KEY)}"\ncors:\n  allowed_origins: ["https://app.example"]\n`,
  );
  open = await generation(`${upstream}${audit}auth:\n  enabled: false\n`);
  failClosed = await generation(
    `${upstream}${audit}  on_error: fail_closed\nauth:\n  enabled: false\n`,
  );
});

afterAll(async () => {
  await Promise.all([keyed.close(), open.close(), failClosed.close()]);
});

interface Context extends PipelineContext {
  generation: Generation;
}

/** The context the steps before `forward` read: an audit log that is failing or not. */
function contextWith(generation: Generation, auditHealthy = true): Context {
  return {
    generation,
    audit: { healthy: auditHealthy, path: "/var/log/mcpgw/audit.jsonl", failure: "ENOSPC" },
  } as unknown as Context;
}

/**
 * Sends one request to a server on port 0 and runs the steps before `forward` on it.
 * Resolves with the exchange and the error the steps ended with, if any.
 */
async function runBeforeForward(
  context: Context,
  options: { method?: string; headers?: Record<string, string>; body?: string },
): Promise<{ exchange: Exchange; error: unknown }> {
  let settle: (outcome: { exchange: Exchange; error: unknown }) => void = () => {};
  const outcome = new Promise<{ exchange: Exchange; error: unknown }>((resolve) => {
    settle = resolve;
  });
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const route = context.generation.routes.mcp("/mcp");
    if (route === undefined) throw new Error("no route at /mcp");
    const exchange: Exchange = {
      req,
      res,
      generation: context.generation,
      route,
      record: newAuditRecord(
        "2026-01-01T00:00:00.000Z",
        "test-1",
        "/mcp",
        null,
        req.method ?? null,
        null,
      ),
      cancellation: new Cancellation(),
      startedAt: 0,
      trace: undefined,
      body: undefined,
      peek: undefined,
      parseError: undefined,
      principal: undefined,
      streaming: false,
      transformResponse: undefined,
      upstreamAuth: undefined,
      releaseStream: undefined,
    };
    // A step may refuse synchronously (runSteps throws) or after waiting (it rejects).
    Promise.resolve()
      .then(() => runSteps(route.steps.slice(0, -1), exchange, context))
      .then(
        () => settle({ exchange, error: undefined }),
        (error: unknown) => settle({ exchange, error }),
      )
      .finally(() => res.end());
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  const req = request({
    port,
    host: "127.0.0.1",
    method: options.method ?? "POST",
    ...(options.headers && { headers: options.headers }),
  });
  req.end(options.body ?? "");
  const [res] = (await once(req, "response")) as [IncomingMessage];
  res.resume();
  const result = await outcome;
  server.close();
  return result;
}

describe("the MCP route's steps before forward", () => {
  it("authenticate before refusing a body that is not JSON: a stranger learns nothing of it", async () => {
    const stranger = await runBeforeForward(contextWith(keyed), { body: "{not json" });
    expect(stranger.error).toBeInstanceOf(AuthError);
    expect(stranger.error).toMatchObject({ result: "missing" });

    const caller = await runBeforeForward(contextWith(keyed), {
      body: "{not json",
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(caller.error).toMatchObject({ code: "parse_error" });
    expect(caller.exchange.principal).toMatchObject({ type: "api_key", keyId: "k" });
    expect(caller.exchange.record).toMatchObject({ auth_result: "ok", key_id: "k" });
  });

  it("refuse a foreign Origin and another method before reading any body", async () => {
    const foreign = await runBeforeForward(contextWith(keyed), {
      body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
      headers: { origin: "https://evil.example", authorization: `Bearer ${KEY}` },
    });
    expect(foreign.error).toMatchObject({ code: "origin_not_allowed", status: 403 });
    expect(foreign.exchange.body).toBeUndefined();

    const put = await runBeforeForward(contextWith(open), { method: "PUT", body: "{}" });
    expect(put.error).toMatchObject({ code: "method_not_allowed", status: 405 });
    expect(put.exchange.body).toBeUndefined();
  });

  it("peek at the JSON-RPC message for the audit line, and pass a good request on", async () => {
    const { exchange, error } = await runBeforeForward(contextWith(open), {
      body: '{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo"}}',
    });
    expect(error).toBeUndefined();
    expect(exchange.record).toMatchObject({
      method: "tools/call",
      request_id: 42,
      tool: "echo",
      auth_type: "none",
      auth_result: "ok",
    });
    expect(exchange.body?.toString()).toContain('"id":42');
  });

  it("refuse after authentication while a fail_closed audit log cannot be written, with the cause", async () => {
    const { error } = await runBeforeForward(contextWith(failClosed, false), {
      body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
    });
    expect(error).toBeInstanceOf(GatewayError);
    expect(error).toMatchObject({
      code: "audit_unavailable",
      status: 503,
      cause: "/var/log/mcpgw/audit.jsonl: ENOSPC",
    });
  });
});
