/**
 * A pool in front of real SDK-built MCP servers, behind a bare node:http frontend that only
 * calls `forward`, driven by the official SDK client.
 */
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
} from "node:http";
import type { AddressInfo } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest, LATEST_PROTOCOL_VERSION } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, it, vi } from "vitest";
import { GatewayError } from "../../../src/errors.js";
import { createLogger, type Logger } from "../../../src/log.js";
import { PoolUpstream } from "../../../src/upstream/pool.js";
import { SessionSealer } from "../../../src/upstream/session-seal.js";
import { Cancellation } from "../../../src/upstream/upstream.js";
import { unusedPortUrl } from "../../helpers/fake-upstreams.js";
import { connectClient, INITIALIZE, POST_HEADERS, textOf } from "../../helpers/mcp-client.js";

const ROUTE = "/mcp";
const HEALTH = { intervalMs: 50, timeoutMs: 500 };

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  // Clients first, then frontends, upstreams and pools: a pool's close waits for streams.
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return chunks.length > 0 ? Buffer.concat(chunks) : undefined;
}

async function listen(server: Server, port = 0): Promise<number> {
  server.listen(port, "127.0.0.1");
  await once(server, "listening");
  return (server.address() as AddressInfo).port;
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A stateful MCP server whose tool `whoami` answers its name. */
class McpUpstream {
  readonly name: string;
  /** Requests that reached the MCP transport: everything but the pool's health checks. */
  mcpRequests = 0;
  /** GETs without a session: the pool's health checks. */
  healthChecks = 0;
  /** Session ids this server issued (its transports' sessionId). */
  readonly sessionIds: string[] = [];
  port = 0;
  #server: Server | undefined;

  constructor(name: string) {
    this.name = name;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/mcp`;
  }

  /** Starts, or starts again on the same port with no sessions (a restarted server). */
  async start(): Promise<void> {
    const transports = new Map<string, StreamableHTTPServerTransport>();
    this.#server = createServer(async (req, res) => {
      const sessionId = req.headers["mcp-session-id"];
      const raw = await readBody(req);
      if (req.method === "GET" && sessionId === undefined) {
        this.healthChecks++;
        res.writeHead(405).end();
        return;
      }
      this.mcpRequests++;
      const body = raw ? JSON.parse(raw.toString()) : undefined;
      let transport = typeof sessionId === "string" ? transports.get(sessionId) : undefined;
      if (!transport) {
        if (sessionId !== undefined || !isInitializeRequest(body)) {
          res.writeHead(404).end();
          return;
        }
        const created = new StreamableHTTPServerTransport({
          sessionIdGenerator: randomUUID,
          onsessioninitialized: (id) => {
            transports.set(id, created);
            this.sessionIds.push(id);
          },
        });
        const server = new McpServer({ name: this.name, version: "0" });
        server.registerTool("whoami", { description: "The server's name" }, async () => ({
          content: [{ type: "text", text: this.name }],
        }));
        await server.connect(created);
        transport = created;
      }
      await transport.handleRequest(req, res, body);
    });
    this.port = await listen(this.#server, this.port);
  }

  async stop(): Promise<void> {
    if (this.#server) await closeServer(this.#server);
    this.#server = undefined;
  }
}

async function startUpstreams<Names extends string[]>(
  ...names: Names
): Promise<{ [K in keyof Names]: McpUpstream }> {
  const upstreams = names.map((name) => new McpUpstream(name)) as {
    [K in keyof Names]: McpUpstream;
  };
  for (const upstream of upstreams) {
    await upstream.start();
    cleanups.push(() => upstream.stop());
  }
  return upstreams;
}

function startPool(targets: string[], sealer: SessionSealer, log?: Logger): PoolUpstream {
  const pool = new PoolUpstream(
    { targets, timeout: 5_000, healthCheck: HEALTH },
    { log: log ?? createLogger("silent"), route: ROUTE, sealer },
  );
  cleanups.push(() => pool.close());
  return pool;
}

/** A frontend that forwards everything to `pool`, as the gateway's last pipeline step does. */
async function startFrontend(pool: PoolUpstream) {
  /** The session ids the caller's onResponse saw: what the gateway audits. */
  const seenSessionIds: string[] = [];
  const server = createServer(async (req, res) => {
    const cancellation = new Cancellation();
    res.on("close", () => {
      if (!res.writableFinished) cancellation.cancel(new Error("the client went away"));
    });
    try {
      await pool.forward({
        req,
        res,
        body: await readBody(req),
        cancellation,
        onResponse: (_status: number, headers: IncomingHttpHeaders) => {
          const id = headers["mcp-session-id"];
          if (typeof id === "string") seenSessionIds.push(id);
        },
      });
    } catch (error) {
      if (res.headersSent) res.destroy();
      else if (error instanceof GatewayError) {
        res.writeHead(error.status).end(JSON.stringify({ error: error.code }));
      } else res.writeHead(500).end(String(error));
    }
  });
  const port = await listen(server);
  cleanups.unshift(() => closeServer(server));
  return { url: `http://127.0.0.1:${port}${ROUTE}`, seenSessionIds };
}

async function connect(url: string) {
  const connected = await connectClient(url);
  cleanups.unshift(() => connected.close());
  return connected;
}

async function whoami(client: Awaited<ReturnType<typeof connect>>["client"]): Promise<string> {
  return textOf(await client.callTool({ name: "whoami", arguments: {} }));
}

/** A bare initialize POST: a new session on whichever target the pool picks. */
async function initialize(url: string): Promise<Response> {
  const res = await fetch(url, { method: "POST", headers: POST_HEADERS, body: INITIALIZE });
  await res.arrayBuffer();
  return res;
}

/** A tools/call of whoami sent by hand with `sessionId`: status and the answering server. */
async function rawWhoami(
  url: string,
  sessionId: string,
): Promise<{ status: number; text: string }> {
  const res = await fetch(url, {
    method: "POST",
    headers: {
      ...POST_HEADERS,
      "mcp-session-id": sessionId,
      "mcp-protocol-version": LATEST_PROTOCOL_VERSION,
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 3,
      method: "tools/call",
      params: { name: "whoami", arguments: {} },
    }),
  });
  return { status: res.status, text: await res.text() };
}

describe("PoolUpstream", () => {
  it("spreads new sessions over the targets and keeps each session on its own", async () => {
    const [a, b] = await startUpstreams("a", "b");
    const pool = startPool([a.url, b.url], new SessionSealer(Buffer.alloc(32, 1)));
    const frontend = await startFrontend(pool);
    const first = await connect(frontend.url);
    const second = await connect(frontend.url);
    const firstName = await whoami(first.client);
    const secondName = await whoami(second.client);
    expect([firstName, secondName].sort()).toEqual(["a", "b"]);
    for (let round = 0; round < 10; round++) {
      const names = await Promise.all([
        whoami(first.client),
        whoami(second.client),
        whoami(first.client),
        whoami(second.client),
      ]);
      expect(names).toEqual([firstName, secondName, firstName, secondName]);
    }
    expect(a.sessionIds).toHaveLength(1);
    expect(b.sessionIds).toHaveLength(1);
  });

  it("sends requests without a session round robin among equally loaded targets", async () => {
    const upstreams = await startUpstreams("a", "b", "c");
    const sealer = new SessionSealer(Buffer.alloc(32, 2));
    const pool = startPool(
      upstreams.map((upstream) => upstream.url),
      sealer,
    );
    const frontend = await startFrontend(pool);
    const targets: string[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await initialize(frontend.url);
      expect(res.status).toBe(200);
      const sealed = res.headers.get("mcp-session-id") ?? "";
      targets.push(sealer.open(ROUTE, sealed)?.target ?? "");
    }
    const urls = upstreams.map((upstream) => upstream.url);
    expect(targets).toEqual([...urls, ...urls]);
    expect(pool.targetStates().map((state) => state.inFlight)).toEqual([0, 0, 0]);
  });

  it("sends a new session to the target with the fewest requests in flight", async () => {
    const [a, b] = await startUpstreams("a", "b");
    const pool = startPool([a.url, b.url], new SessionSealer(Buffer.alloc(32, 3)));
    const frontend = await startFrontend(pool);
    // The client holds its standalone GET stream open on `a`.
    const first = await connect(frontend.url);
    expect(await whoami(first.client)).toBe("a");
    await vi.waitFor(() => expect(pool.targetStates()[0]?.inFlight).toBe(1));
    // A request that completes goes to `b`; round robin alone would now pick `a` again.
    await initialize(frontend.url);
    expect(b.sessionIds).toHaveLength(1);
    const second = await connect(frontend.url);
    expect(await whoami(second.client)).toBe("b");
  });

  it("hands the client and the caller a sealed id, never the upstream's", async () => {
    const [a] = await startUpstreams("a");
    const sealer = new SessionSealer(Buffer.alloc(32, 4));
    const pool = startPool([a.url], sealer);
    const frontend = await startFrontend(pool);
    const { transport, client } = await connect(frontend.url);
    expect(await whoami(client)).toBe("a");
    const clientId = transport.sessionId ?? "";
    const [upstreamId] = a.sessionIds;
    expect(upstreamId).toBeDefined();
    expect(clientId).not.toBe(upstreamId);
    expect(clientId).not.toContain(upstreamId);
    expect(clientId).toMatch(/^[\x21-\x7e]+$/);
    expect(sealer.open(ROUTE, clientId)).toEqual({ target: a.url, upstreamSessionId: upstreamId });
    // The caller saw the same id on every response of the session: one id to audit.
    expect(frontend.seenSessionIds.length).toBeGreaterThan(1);
    expect(new Set(frontend.seenSessionIds)).toEqual(new Set([clientId]));
  });

  it("continues a session on another gateway holding the same key, not on one without it", async () => {
    const [a, b] = await startUpstreams("a", "b");
    const key = Buffer.alloc(32, 5);
    const targets = [a.url, b.url];
    const frontA = await startFrontend(startPool(targets, new SessionSealer(key)));
    const frontB = await startFrontend(startPool(targets, new SessionSealer(Buffer.from(key))));
    const frontC = await startFrontend(startPool(targets, new SessionSealer(Buffer.alloc(32, 6))));
    const { client, transport } = await connect(frontA.url);
    const name = await whoami(client);
    const sessionId = transport.sessionId ?? "";

    const onB = await rawWhoami(frontB.url, sessionId);
    expect(onB.status).toBe(200);
    expect(onB.text).toContain(`"text":"${name}"`);

    const before = a.mcpRequests + b.mcpRequests;
    const onC = await rawWhoami(frontC.url, sessionId);
    expect(onC.status).toBe(404);
    expect(JSON.parse(onC.text)).toEqual({ error: "session_not_found" });
    expect(a.mcpRequests + b.mcpRequests).toBe(before);
  });

  it("answers forged, tampered and unknown session ids 404 without reaching a target", async () => {
    const [a, b] = await startUpstreams("a", "b");
    const sealer = new SessionSealer(Buffer.alloc(32, 7));
    const pool = startPool([a.url, b.url], sealer);
    const frontend = await startFrontend(pool);
    const { client, transport } = await connect(frontend.url);
    await whoami(client);
    const sealed = transport.sessionId ?? "";
    const upstreamId = [...a.sessionIds, ...b.sessionIds][0] ?? "";
    const tampered = Buffer.from(sealed, "base64url");
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] as number) ^ 0x80;

    const forged = [
      upstreamId,
      randomUUID(),
      tampered.toString("base64url"),
      sealed.slice(0, -4),
      sealer.seal("/other/mcp", a.url, upstreamId),
      sealer.seal(ROUTE, "http://127.0.0.1:9/mcp", upstreamId),
      "!!!",
    ];
    const before = a.mcpRequests + b.mcpRequests;
    for (const id of forged) {
      const { status, text } = await rawWhoami(frontend.url, id);
      expect(status, id).toBe(404);
      expect(JSON.parse(text)).toEqual({ error: "session_not_found" });
    }
    expect(a.mcpRequests + b.mcpRequests).toBe(before);
    expect((await rawWhoami(frontend.url, sealed)).status).toBe(200);
  });

  it("moves new sessions off a target that is down, and back when it returns", async () => {
    const [a, b] = await startUpstreams("a", "b");
    const lines: Record<string, unknown>[] = [];
    const log = createLogger("info", { write: (line: string) => lines.push(JSON.parse(line)) });
    const pool = startPool([a.url, b.url], new SessionSealer(Buffer.alloc(32, 8)), log);
    const frontend = await startFrontend(pool);
    const onA = await connect(frontend.url);
    expect(await whoami(onA.client)).toBe("a");
    const sessionOnA = onA.transport.sessionId ?? "";
    await onA.client.close();

    await a.stop();
    await vi.waitFor(() => expect(pool.targetStates()[0]?.healthy).toBe(false));
    expect(pool.targetStates()[1]?.healthy).toBe(true);
    expect(lines).toContainEqual(
      expect.objectContaining({ level: "warn", route: ROUTE, target: a.url }),
    );

    for (let i = 0; i < 3; i++) {
      const { client } = await connect(frontend.url);
      expect(await whoami(client)).toBe("b");
    }
    const lost = await rawWhoami(frontend.url, sessionOnA);
    expect(lost.status).toBe(404);
    expect(JSON.parse(lost.text)).toEqual({ error: "session_not_found" });

    await a.start();
    await vi.waitFor(() => expect(pool.targetStates()[0]?.healthy).toBe(true));
    expect(lines).toContainEqual(
      expect.objectContaining({ level: "info", route: ROUTE, target: a.url }),
    );
    // `b` holds the three clients' streams: the least loaded target is `a` again.
    const back = await connect(frontend.url);
    expect(await whoami(back.client)).toBe("a");
  });

  it("marks a target down at once when a request cannot reach it", async () => {
    const [a, b] = await startUpstreams("a", "b");
    const pool = new PoolUpstream(
      {
        targets: [a.url, b.url],
        timeout: 5_000,
        healthCheck: { intervalMs: 600_000, timeoutMs: 500 },
      },
      { log: createLogger("silent"), route: ROUTE, sealer: SessionSealer.random() },
    );
    cleanups.push(() => pool.close());
    const frontend = await startFrontend(pool);
    // The first round of checks reached `a`; the next one is ten minutes away.
    await vi.waitFor(() => expect(a.healthChecks).toBe(1));
    await a.stop();
    const failed = await fetch(frontend.url, {
      method: "POST",
      headers: POST_HEADERS,
      body: INITIALIZE,
    });
    expect(failed.status).toBe(502);
    await failed.arrayBuffer();
    expect(pool.targetStates().map((state) => state.healthy)).toEqual([false, true]);
    expect((await initialize(frontend.url)).status).toBe(200);
    expect(b.sessionIds).toHaveLength(1);
  });

  it("tries a target that was down when none is up, and fails with 502", async () => {
    const pool = startPool([await unusedPortUrl(), await unusedPortUrl()], SessionSealer.random());
    await vi.waitFor(() =>
      expect(pool.targetStates().map((state) => state.healthy)).toEqual([false, false]),
    );
    const frontend = await startFrontend(pool);
    const res = await fetch(frontend.url, {
      method: "POST",
      headers: POST_HEADERS,
      body: INITIALIZE,
    });
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({ error: "upstream_unreachable" });
    expect(pool.targetStates().map((state) => state.inFlight)).toEqual([0, 0]);
  });
});
