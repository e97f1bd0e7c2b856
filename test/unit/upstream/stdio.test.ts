import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it, vi } from "vitest";
import { GatewayError } from "../../../src/errors.js";
import { createLogger } from "../../../src/log.js";
import { StdioUpstream, type StdioUpstreamConfig } from "../../../src/upstream/stdio.js";
import { Cancellation } from "../../../src/upstream/upstream.js";
import { connectClient, INITIALIZE, POST_HEADERS, textOf } from "../../helpers/mcp-client.js";

const ENV_SERVER = fileURLToPath(new URL("../../fixtures/stdio/env-server.mjs", import.meta.url));
const EVERYTHING = fileURLToPath(
  new URL(
    "../../../node_modules/@modelcontextprotocol/server-everything/dist/index.js",
    import.meta.url,
  ),
);
const ROUTE = "/stdio/mcp";

interface Harness {
  url: string;
  upstream: StdioUpstream;
  logs: Record<string, unknown>[];
  heads: { status: number; headers: IncomingHttpHeaders }[];
  spans: URL[];
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A real HTTP server on port 0 that forwards every request to a StdioUpstream. */
async function start(config: Partial<StdioUpstreamConfig> = {}): Promise<Harness> {
  const logs: Record<string, unknown>[] = [];
  const log = createLogger("debug", {
    write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>),
  });
  const upstream = new StdioUpstream(
    {
      command: [process.execPath, ENV_SERVER],
      env: {},
      maxSessions: 10,
      idleTimeoutMs: 60_000,
      ...config,
    },
    { log, route: ROUTE },
  );
  const heads: Harness["heads"] = [];
  const spans: URL[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const cancellation = new Cancellation();
      res.on("close", () => {
        if (!res.writableFinished) cancellation.cancel(new Error("the client left"));
      });
      upstream
        .forward({
          req,
          res,
          body: req.method === "POST" ? Buffer.concat(chunks) : undefined,
          cancellation,
          onResponse: (status, headers) => heads.push({ status, headers }),
          startSpan: (target) => {
            spans.push(target);
            return undefined;
          },
        })
        .catch((error: unknown) => {
          if (!(error instanceof GatewayError) || res.headersSent) return res.destroy();
          const headers: Record<string, string> = { "content-type": "application/json" };
          if (error.retryAfter !== undefined) headers["retry-after"] = String(error.retryAfter);
          res
            .writeHead(error.status, headers)
            .end(JSON.stringify({ error: error.code, message: error.message }));
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(async () => {
    await upstream.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/stdio/mcp`, upstream, logs, heads, spans };
}

async function connect(url: string) {
  const connection = await connectClient(url);
  cleanups.push(() => connection.close());
  return connection;
}

async function pidOf(client: Awaited<ReturnType<typeof connect>>["client"]): Promise<number> {
  return Number(textOf(await client.callTool({ name: "pid", arguments: {} })));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw error;
  }
}

async function expectGone(pid: number): Promise<void> {
  await vi.waitFor(() => expect(isAlive(pid)).toBe(false), { timeout: 5_000 });
}

function postInitialize(url: string, headers: Record<string, string> = {}) {
  return fetch(url, { method: "POST", headers: { ...POST_HEADERS, ...headers }, body: INITIALIZE });
}

describe("StdioUpstream", () => {
  it("bridges tools/list and tools/call to server-everything", async () => {
    const { url } = await start({ command: [process.execPath, EVERYTHING, "stdio"] });
    const { client } = await connect(url);
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name)).toContain("echo");
    const result = await client.callTool({ name: "echo", arguments: { message: "hi there" } });
    expect(textOf(result)).toContain("hi there");
  });

  it("gives the child only the route's env plus PATH", async () => {
    process.env.MCPGW_SECRET_TEST = "x";
    cleanups.push(async () => delete process.env.MCPGW_SECRET_TEST);
    const { url } = await start({ env: { MCPGW_ROUTE_VAR: "route-value" } });
    const { client } = await connect(url);
    const env = JSON.parse(textOf(await client.callTool({ name: "env", arguments: {} })));
    expect(env).toEqual({ MCPGW_ROUTE_VAR: "route-value", PATH: process.env.PATH });
    expect(env.MCPGW_SECRET_TEST).toBeUndefined();
  });

  it("runs one child per session", async () => {
    const { url, upstream } = await start();
    const first = await connect(url);
    const second = await connect(url);
    expect(upstream.sessions).toBe(2);
    const pids = [await pidOf(first.client), await pidOf(second.client)];
    expect(pids[0]).not.toBe(pids[1]);
    expect(pids.every(isAlive)).toBe(true);
  });

  it("refuses a session beyond maxSessions with 503, spawning nothing", async () => {
    const { url, upstream } = await start({ maxSessions: 1 });
    await connect(url);
    await expect(connectClient(url)).rejects.toMatchObject({ code: 503 });
    const response = await postInitialize(url);
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ error: "upstream_busy" });
    expect(upstream.sessions).toBe(1);
  });

  it("answers a call pending at a crash with an error, then 404 for the session", async () => {
    const { url, upstream, logs } = await start();
    const { client, transport } = await connect(url);
    const pid = await pidOf(client);
    await expect(client.callTool({ name: "crash", arguments: {} })).rejects.toThrow(
      /exited \(code 3\)/,
    );
    await expectGone(pid);
    expect(upstream.sessions).toBe(0);
    const sessionId = transport.sessionId ?? "";
    expect(sessionId).not.toBe("");
    const response = await fetch(url, {
      method: "POST",
      headers: { ...POST_HEADERS, "mcp-session-id": sessionId },
      body: JSON.stringify({ jsonrpc: "2.0", id: 9, method: "tools/list" }),
    });
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: "session_not_found" });
    expect(logs).toContainEqual(
      expect.objectContaining({ level: "warn", route: ROUTE, pid, code: 3 }),
    );
  });

  it("answers 502 naming a command that cannot start, then backs off with 503", async () => {
    const { url, upstream, logs } = await start({ command: ["mcpgw-no-such-command", "stdio"] });
    const first = await postInitialize(url);
    expect(first.status).toBe(502);
    const body = (await first.json()) as { error: string; message: string };
    expect(body.error).toBe("upstream_unreachable");
    expect(body.message).toContain('"mcpgw-no-such-command"');
    expect(body.message).toContain("ENOENT");
    const second = await postInitialize(url);
    expect(second.status).toBe(503);
    expect(Number(second.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(await second.json()).toMatchObject({ error: "upstream_busy" });
    expect(upstream.sessions).toBe(0);
    const errors = logs.filter((line) => line.level === "error");
    expect(errors).toEqual([
      expect.objectContaining({ route: ROUTE, command: "mcpgw-no-such-command" }),
    ]);
  });

  it("backs off after a child that exits before answering initialize", async () => {
    const { url, upstream } = await start({ command: [process.execPath, "-e", "process.exit(1)"] });
    await expect(connectClient(url)).rejects.toThrow(/exited \(code 1\)/);
    expect(upstream.sessions).toBe(0);
    const second = await postInitialize(url);
    expect(second.status).toBe(503);
    expect(second.headers.get("retry-after")).toBe("1");
  });

  it("ends a session whose initialize the transport refused", async () => {
    const { url, upstream } = await start();
    const initialize = JSON.parse(INITIALIZE);
    const response = await fetch(url, {
      method: "POST",
      headers: POST_HEADERS,
      body: JSON.stringify([initialize, { ...initialize, id: 2 }]),
    });
    expect(response.status).toBe(400);
    await vi.waitFor(() => expect(upstream.sessions).toBe(0));
  });

  it("ends an idle session and its child", async () => {
    const { url, upstream } = await start({ idleTimeoutMs: 1_500 });
    const { client } = await connect(url);
    const pid = await pidOf(client);
    await vi.waitFor(() => expect(upstream.sessions).toBe(0), { timeout: 8_000 });
    await expectGone(pid);
    await expect(client.listTools()).rejects.toMatchObject({ code: 404 });
  });

  it("ends the child on DELETE", async () => {
    const { url, upstream } = await start();
    const { client, transport } = await connect(url);
    const pid = await pidOf(client);
    await transport.terminateSession();
    expect(upstream.sessions).toBe(0);
    await expectGone(pid);
  });

  it("kills every child on close", async () => {
    const { url, upstream } = await start();
    const pids = [
      await pidOf((await connect(url)).client),
      await pidOf((await connect(url)).client),
    ];
    await upstream.close();
    expect(upstream.sessions).toBe(0);
    for (const pid of pids) await expectGone(pid);
    const refused = await postInitialize(url);
    expect(refused.status).toBe(503);
  });

  it("shows the response head to onResponse, starts a span, and logs the child's stderr", async () => {
    const { url, heads, spans, logs } = await start();
    const { client } = await connect(url);
    const pid = await pidOf(client);
    const [initialize] = heads;
    expect(initialize?.status).toBe(200);
    expect(initialize?.headers["mcp-session-id"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(initialize?.headers["content-type"]).toBe("text/event-stream");
    expect(spans[0]?.href).toBe("stdio:node");
    await vi.waitFor(() =>
      expect(logs).toContainEqual(
        expect.objectContaining({
          level: "info",
          route: ROUTE,
          pid,
          stream: "stderr",
          msg: `env-server ready pid=${pid}`,
        }),
      ),
    );
  });

  it("refuses an unknown session id with 404, spawning nothing", async () => {
    const { url, upstream } = await start();
    const response = await fetch(url, {
      method: "POST",
      headers: { ...POST_HEADERS, "mcp-session-id": "no-such-session" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" }),
    });
    expect(response.status).toBe(404);
    expect(upstream.sessions).toBe(0);
  });
});
