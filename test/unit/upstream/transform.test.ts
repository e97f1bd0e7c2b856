/**
 * The response transform hook on every upstream kind: what a list-filtering step will use.
 * Real upstreams (the example server answering JSON and SSE, server-everything over stdio),
 * driven by the SDK client through a frontend that forwards with a transform.
 */
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { startExampleServer } from "../../../examples/mcp-server.js";
import { GatewayError } from "../../../src/errors.js";
import { createLogger } from "../../../src/log.js";
import type { MessageTransform } from "../../../src/mcp/rewrite.js";
import { HttpUpstream } from "../../../src/upstream/http.js";
import { StdioUpstream } from "../../../src/upstream/stdio.js";
import { Cancellation, type Upstream } from "../../../src/upstream/upstream.js";
import { connectClient } from "../../helpers/mcp-client.js";

const EVERYTHING = fileURLToPath(
  new URL(
    "../../../node_modules/@modelcontextprotocol/server-everything/dist/index.js",
    import.meta.url,
  ),
);

/** Keeps only the `echo` tool in a tools/list result; every other message unchanged. */
const onlyEcho: MessageTransform = (message) => {
  const result = (message as { result?: { tools?: { name: string }[] } }).result;
  if (!result?.tools) return message;
  return {
    ...(message as object),
    result: { ...result, tools: result.tools.filter(({ name }) => name === "echo") },
  };
};

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await Promise.all(cleanup.splice(0).map((close) => close()));
});

async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return chunks.length === 0 ? undefined : Buffer.concat(chunks);
}

/** A frontend forwarding to `upstream`, with the transform on tools/list requests only. */
async function frontend(upstream: Upstream, transform = true): Promise<string> {
  const server: Server = createServer(async (req, res) => {
    const body = await readBody(req);
    const isList = transform && (body?.toString().includes('"tools/list"') ?? false);
    await upstream
      .forward({
        req,
        res,
        body,
        cancellation: new Cancellation(),
        ...(isList && { transformResponse: onlyEcho }),
      })
      .catch((error: unknown) => {
        if (res.headersSent) res.destroy();
        else res.writeHead(error instanceof GatewayError ? error.status : 500).end();
      });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanup.push(async () => {
    server.closeAllConnections();
    server.close();
    await upstream.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
}

async function toolNames(url: string): Promise<{ listed: string[]; called: string }> {
  const client = await connectClient(url);
  const { tools } = await client.client.listTools();
  const echoed = await client.client.callTool({ name: "echo", arguments: { message: "hi" } });
  await client.close();
  return { listed: tools.map((tool) => tool.name), called: JSON.stringify(echoed) };
}

describe("transformResponse", () => {
  for (const jsonResponse of [false, true]) {
    it(`rewrites an HTTP upstream's ${jsonResponse ? "JSON" : "event-stream"} answers`, async () => {
      const example = await startExampleServer({ jsonResponse });
      cleanup.push(() => example.close());
      const url = await frontend(new HttpUpstream({ url: example.url, timeout: 5_000 }));
      const { listed, called } = await toolNames(url);
      expect(listed).toEqual(["echo"]);
      expect(called).toContain("hi");
    });
  }

  it("rewrites a stdio upstream's answers, and only those of the request it was set on", async () => {
    const stdio = new StdioUpstream(
      {
        command: [process.execPath, EVERYTHING, "stdio"],
        env: {},
        maxSessions: 4,
        idleTimeoutMs: 0,
      },
      { log: createLogger("silent"), route: "/everything/mcp" },
    );
    const url = await frontend(stdio);
    const { listed, called } = await toolNames(url);
    expect(listed).toEqual(["echo"]);
    expect(called).toContain("hi");
  });

  it("passes the upstream's answers untouched without a transform", async () => {
    const example = await startExampleServer();
    cleanup.push(() => example.close());
    const url = await frontend(new HttpUpstream({ url: example.url, timeout: 5_000 }), false);
    const { listed } = await toolNames(url);
    expect(listed.length).toBeGreaterThan(1);
    expect(listed).toContain("echo");
  });
});
