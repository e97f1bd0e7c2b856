/**
 * stdio routes through the built binary, as an operator runs them: the real server-everything
 * and a small SDK stdio server as children of `mcpgw run`, driven by the SDK client.
 */
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { stringify } from "yaml";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { runBin } from "../helpers/bin.js";
import { killDaemons, startDaemon } from "../helpers/daemon.js";
import { cheapHash } from "../helpers/keys.js";
import { connectClient, textOf } from "../helpers/mcp-client.js";

const KEY = "stdio-routes-key-0123456789";
const EVERYTHING = [
  process.execPath,
  path.resolve("node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
  "stdio",
];
const ENV_SERVER = [process.execPath, path.resolve("test/fixtures/stdio/env-server.mjs")];

let upstream: ExampleServer;
let hash: string;

beforeAll(async () => {
  [upstream, hash] = await Promise.all([startExampleServer(), cheapHash(KEY)]);
  return () => upstream.close();
});

afterEach(() => killDaemons());

const auth = () => ({ auth: { keys: [{ id: "ops", hash }] } });
const bearer = { authorization: `Bearer ${KEY}` };

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("mcpgw run with stdio routes", () => {
  it("serves server-everything over stdio beside an HTTP route, and audits the route", async () => {
    const daemon = await startDaemon(upstream.url, {
      ...auth(),
      routes: [{ path: "/everything/mcp", upstream: { command: EVERYTHING } }],
    });
    const origin = new URL(daemon.url).origin;
    const client = await connectClient(`${origin}/everything/mcp`, bearer);
    const { tools } = await client.client.listTools();
    expect(tools.map((tool) => tool.name)).toContain("echo");
    const echoed = await client.client.callTool({ name: "echo", arguments: { message: "hi" } });
    expect(textOf(echoed)).toContain("hi");
    const sessionId = client.transport.sessionId;
    await client.close();

    const http = await connectClient(daemon.url, bearer);
    await http.client.listTools();
    await http.close();

    const lines = await vi.waitFor(async () => {
      const all = await daemon.auditLines();
      if (!all.some((line) => line.route === "/mcp")) throw new Error("not yet");
      return all;
    });
    const call = lines.find((line) => line.method === "tools/call");
    expect(call).toMatchObject({
      route: "/everything/mcp",
      tool: "echo",
      session_id: sessionId,
      status: 200,
      key_id: "ops",
    });
  });

  it("gives each session its own child with only the route's env and PATH, and kills them on SIGTERM", async () => {
    const daemon = await startDaemon(
      upstream.url,
      {
        ...auth(),
        routes: [
          {
            path: "/env/mcp",
            upstream: { command: ENV_SERVER, env: { GREETING: "${MCPGW_TEST_GREETING}" } },
          },
        ],
      },
      { MCPGW_TEST_GREETING: "hello", MCPGW_TEST_GATEWAY_SECRET: "must-not-leak" },
    );
    const url = `${new URL(daemon.url).origin}/env/mcp`;
    const first = await connectClient(url, bearer);
    const second = await connectClient(url, bearer);
    const env = JSON.parse(textOf(await first.client.callTool({ name: "env", arguments: {} })));
    expect(env).toMatchObject({ GREETING: "hello", PATH: process.env.PATH });
    // Nothing of the gateway's environment: not its secret, not even HOME.
    expect(Object.keys(env).sort()).toEqual(["GREETING", "PATH"]);

    const pids = await Promise.all(
      [first, second].map(async ({ client }) =>
        Number(textOf(await client.callTool({ name: "pid", arguments: {} }))),
      ),
    );
    expect(pids[0]).not.toBe(pids[1]);
    expect(pids.every(alive)).toBe(true);
    const metrics = await (await fetch(`${new URL(daemon.url).origin}/metrics`)).text();
    expect(metrics).toContain('mcpgw_upstream_sessions{route="/env/mcp"} 2');
    const stderr = await daemon.bin.waitForLog(
      (line) => line.route === "/env/mcp" && String(line.msg).startsWith("env-server ready"),
    );
    expect(stderr.level).toBe("info");

    daemon.bin.child.kill("SIGTERM");
    expect(await daemon.bin.exited).toBe(0);
    await vi.waitFor(() => expect(pids.some(alive)).toBe(false));
  });

  it("check-config lists the routes, and refuses a stdio command that is not there", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "mcpgw-stdio-"));
    const file = path.join(dir, "mcpgw.yaml");
    await writeFile(
      path.join(dir, "good.yaml"),
      stringify({
        upstream: { url: upstream.url },
        audit: { path: "audit.jsonl" },
        auth: { enabled: false },
        routes: [{ path: "/tools/mcp", upstream: { command: [...ENV_SERVER, "--secret=x"] } }],
      }),
    );
    await writeFile(
      file,
      stringify({
        upstream: { url: upstream.url },
        audit: { path: "audit.jsonl" },
        auth: { enabled: false },
        routes: [{ path: "/tools/mcp", upstream: { command: ["no-such-mcp-server", "stdio"] } }],
      }),
    );
    const good = await runBin([
      "check-config",
      "--config",
      file.replace("mcpgw.yaml", "good.yaml"),
    ]);
    expect(good.code).toBe(0);
    expect(good.stdout).toContain(`route /mcp -> ${upstream.url}`);
    expect(good.stdout).toContain(`route /tools/mcp -> stdio ${process.execPath}`);
    expect(good.stdout).not.toContain("--secret");
    const result = await runBin(["check-config", "--config", file]);
    expect(result.code).toBe(78);
    expect(result.stderr).toMatch(
      /mcpgw\.yaml:\d+:\d+ routes\[0\]\.upstream\.command\[0\]: command "no-such-mcp-server" not found on PATH/,
    );
  });
});

describe("reloading stdio routes", () => {
  it("keeps an unchanged route's children, and ends the sessions of a removed route", async () => {
    const route = { path: "/env/mcp", upstream: { command: ENV_SERVER } };
    const daemon = await startDaemon(upstream.url, { ...auth(), routes: [route] });
    const url = `${new URL(daemon.url).origin}/env/mcp`;
    const session = await connectClient(url, bearer);
    const pidOf = async () =>
      Number(textOf(await session.client.callTool({ name: "pid", arguments: {} })));
    const pid = await pidOf();

    await daemon.write({ ...auth(), routes: [route], log: { level: "debug" } });
    daemon.bin.child.kill("SIGHUP");
    await daemon.bin.waitForLog((line) => line.msg === "config reloaded" && line.generation === 2);
    expect(await pidOf()).toBe(pid);

    await daemon.write({ ...auth(), routes: [] });
    daemon.bin.child.kill("SIGHUP");
    await daemon.bin.waitForLog((line) => line.msg === "config reloaded" && line.generation === 3);
    // The session's GET stream is closed, the generation ends, and the child with it.
    await vi.waitFor(() => expect(alive(pid)).toBe(false));
    await expect(pidOf()).rejects.toThrow(/no route for \/env\/mcp/);
    await vi.waitFor(async () => {
      const lines = await daemon.auditLines();
      expect(lines.some((line) => line.method === "GET" && line.error === "route_removed")).toBe(
        true,
      );
    });
    await session.close().catch(() => {});
  });
});

describe("2026-07-28 clients on a stdio route", () => {
  it("are served by one child the gateway initializes: list, call, progress, and discover", async () => {
    const daemon = await startDaemon(upstream.url, {
      ...auth(),
      routes: [{ path: "/everything/mcp", upstream: { command: EVERYTHING } }],
    });
    const url = new URL("/everything/mcp", daemon.url);
    const connect = async () => {
      const client = new Client(
        { name: "mcpgw-stdio-2026", version: "0" },
        { versionNegotiation: { mode: { pin: "2026-07-28" } } },
      );
      await client.connect(
        new StreamableHTTPClientTransport(url, { requestInit: { headers: bearer } }),
      );
      return client;
    };
    const [first, second] = await Promise.all([connect(), connect()]);
    const { tools } = await first.listTools();
    expect(tools.map((tool) => tool.name)).toContain("echo");
    const [a, b] = await Promise.all([
      first.callTool({ name: "echo", arguments: { message: "from a" } }),
      second.callTool({ name: "echo", arguments: { message: "from b" } }),
    ]);
    expect(JSON.stringify(a)).toContain("from a");
    expect(JSON.stringify(b)).toContain("from b");
    const progress: number[] = [];
    await first.callTool(
      { name: "trigger-long-running-operation", arguments: { duration: 1, steps: 3 } },
      { onprogress: ({ progress: value }) => progress.push(value) },
    );
    expect(progress).toEqual([1, 2, 3]);
    expect(first.getServerVersion()?.name).toBe("mcp-servers/everything");

    const lines = await daemon.auditLines();
    const calls = lines.filter((line) => line.route === "/everything/mcp" && line.tool === "echo");
    expect(calls).toHaveLength(2);
    for (const line of calls) {
      expect(line).toMatchObject({ session_id: null, protocol_version: "2026-07-28", status: 200 });
    }
    // One child for the stateless clients, not one per client.
    const metrics = await (await fetch(new URL("/metrics", daemon.url))).text();
    expect(metrics).toContain('mcpgw_upstream_sessions{route="/everything/mcp"} 0');
    await Promise.all([first.close(), second.close()]);
  });
});
