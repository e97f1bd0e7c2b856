/**
 * A pool route across gateway processes: two `mcpgw run` sharing `sessions.key` continue each
 * other's sessions on the target that created them; an id that does not open reaches nothing.
 */
import { randomBytes } from "node:crypto";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { killDaemons, startDaemon } from "../helpers/daemon.js";
import { cheapHash } from "../helpers/keys.js";
import { connectClient, POST_HEADERS, TOOLS_LIST } from "../helpers/mcp-client.js";

const KEY = "pool-routes-key-0123456789";

interface CountingServer extends ExampleServer {
  /** MCP POSTs received (health checks are GETs). */
  posts: number;
}

async function countingServer(): Promise<CountingServer> {
  const counting = { posts: 0 } as CountingServer;
  const server = await startExampleServer({
    onRequest: (req) => {
      if (req.method === "POST") counting.posts++;
    },
  });
  return Object.assign(counting, server);
}

let targets: CountingServer[];
let hash: string;

beforeAll(async () => {
  [targets, hash] = await Promise.all([
    Promise.all([countingServer(), countingServer()]),
    cheapHash(KEY),
  ]);
  return () => Promise.all(targets.map((target) => target.close()));
});

afterEach(() => killDaemons());

function poolConfig(sessionKey: string) {
  return {
    upstream: { targets: targets.map((target) => target.url) },
    sessions: { key: sessionKey },
    auth: { keys: [{ id: "agent", hash }] },
  };
}

const posts = () => targets.map((target) => target.posts);

async function toolsList(url: string, sessionId: string): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: {
      ...POST_HEADERS,
      authorization: `Bearer ${KEY}`,
      "mcp-session-id": sessionId,
      "mcp-protocol-version": "2025-11-25",
    },
    body: TOOLS_LIST,
  });
}

describe("a pool route", () => {
  it("continues a session on another replica with the same sessions.key, on its target", async () => {
    const sessionKey = randomBytes(32).toString("base64");
    const [a, b] = await Promise.all([
      startDaemon("http://127.0.0.1:9/unused", poolConfig(sessionKey)),
      startDaemon("http://127.0.0.1:9/unused", poolConfig(sessionKey)),
    ]);
    const before = posts();
    const client = await connectClient(a.url, { authorization: `Bearer ${KEY}` });
    await client.client.listTools();
    const sessionId = client.transport.sessionId as string;
    const after = posts();
    const owner = after.findIndex((count, index) => count > (before[index] as number));
    expect(owner).not.toBe(-1);
    // Exactly one target saw the session.
    expect(after[1 - owner]).toBe(before[1 - owner]);

    const continued = await toolsList(b.url, sessionId);
    expect(continued.status).toBe(200);
    expect(await continued.text()).toContain('"tools"');
    expect(posts()[owner]).toBe((after[owner] as number) + 1);
    expect(posts()[1 - owner]).toBe(before[1 - owner]);
    const metrics = await (await fetch(`${new URL(b.url).origin}/metrics`)).text();
    for (const target of targets) {
      expect(metrics).toContain(`mcpgw_upstream_target_up{route="/mcp",target="${target.url}"} 1`);
    }
    await client.close();
  });

  it("answers 404 to a forged id or one sealed with another key, and forwards nothing", async () => {
    const a = await startDaemon(
      "http://127.0.0.1:9/unused",
      poolConfig(randomBytes(32).toString("base64")),
    );
    const other = await startDaemon(
      "http://127.0.0.1:9/unused",
      poolConfig(randomBytes(32).toString("base64")),
    );
    const client = await connectClient(a.url, { authorization: `Bearer ${KEY}` });
    const sessionId = client.transport.sessionId as string;
    const before = posts();

    const foreign = await toolsList(other.url, sessionId);
    expect(foreign.status).toBe(404);
    expect(await foreign.json()).toMatchObject({ jsonrpc: "2.0", id: 7, error: { code: -32001 } });
    const forged = await toolsList(a.url, `${sessionId.slice(0, -2)}AA`);
    expect(forged.status).toBe(404);
    await forged.text();
    expect(posts()).toEqual(before);

    const lines = await vi.waitFor(async () => {
      const all = await other.auditLines();
      if (all.length === 0) throw new Error("no audit line yet");
      return all;
    });
    expect(lines.at(-1)).toMatchObject({
      route: "/mcp",
      status: 404,
      error: "session_not_found",
      session_id: sessionId,
    });
    await client.close();
  });
});
