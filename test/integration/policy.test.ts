/**
 * The authorization policy against real upstream tools through the SDK client: allowed, denied,
 * step-up (require_scopes), lists filtered over SSE and JSON, batches, reload of the rules.
 */
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { explain } from "../../src/cli/explain.js";
import { startSdk2Server } from "../fixtures/sdk2-server.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { connectClient, POST_HEADERS } from "../helpers/mcp-client.js";

const KEYS = {
  ci: "policy-ci-key-0123456789",
  reader: "policy-reader-key-0123456789",
  admin: "policy-admin-key-0123456789",
};

let sse: ExampleServer;
let json: ExampleServer;
let gw: TestGateway;
let origin: string;

const rules = (denyCountdown = true) => ({
  default: "allow",
  rules: [
    ...(denyCountdown
      ? [
          {
            id: "no-countdown-for-ci",
            match: { method: "tools/call", tool: "countdown", key_id: "ci" },
            effect: "deny",
          },
        ]
      : []),
    {
      id: "adding-needs-admin",
      match: { method: "tools/call", tool: "add" },
      require_scopes: ["mcp:admin"],
    },
    { id: "no-inspection", match: { tool: "inspect-*" }, effect: "deny" },
  ],
});

async function config(denyCountdown = true) {
  return {
    upstream: { url: sse.url },
    routes: [{ path: "/json/mcp", upstream: { url: json.url } }],
    auth: {
      keys: [
        { id: "ci", hash: await cheapHash(KEYS.ci), scopes: ["mcp:read"] },
        { id: "reader", hash: await cheapHash(KEYS.reader), scopes: ["mcp:read"] },
        { id: "admin", hash: await cheapHash(KEYS.admin), scopes: ["mcp:read", "mcp:admin"] },
      ],
    },
    policy: rules(denyCountdown),
  };
}

beforeAll(async () => {
  [sse, json] = await Promise.all([
    startExampleServer(),
    startExampleServer({ jsonResponse: true }),
  ]);
  gw = await startGateway(await config());
  origin = new URL(gw.url).origin;
});

afterAll(async () => {
  await gw.stop();
  await Promise.all([sse.close(), json.close()]);
});

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

async function toolNames(path: string, key: string): Promise<string[]> {
  const client = await connectClient(`${origin}${path}`, bearer(key));
  const { tools } = await client.client.listTools();
  await client.close();
  return tools.map((tool) => tool.name).sort();
}

async function call(key: string, tool: string, args: Record<string, unknown>) {
  const res = await fetch(`${origin}/mcp`, {
    method: "POST",
    headers: { ...POST_HEADERS, ...bearer(key) },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 31,
      method: "tools/call",
      params: { name: tool, arguments: args },
    }),
  });
  return {
    status: res.status,
    challenge: res.headers.get("www-authenticate"),
    text: await res.text(),
  };
}

describe("the policy", () => {
  it("lists exactly the tools a caller may call, over SSE and JSON", async () => {
    // ci may not call countdown, nor add (it lacks mcp:admin); nobody may call inspect-request.
    expect(await toolNames("/mcp", KEYS.ci)).toEqual(["echo"]);
    expect(await toolNames("/json/mcp", KEYS.ci)).toEqual(["echo"]);
    expect(await toolNames("/mcp", KEYS.reader)).toEqual(["countdown", "echo"]);
    expect(await toolNames("/mcp", KEYS.admin)).toEqual(["add", "countdown", "echo"]);
    const record = (await gw.auditRecords(1)).filter((line) => line.method === "tools/list").at(-1);
    expect(record).toMatchObject({ action: "allow", rule: "default" });
  });

  it("sends a filtered JSON list with the Content-Length of what it sends", async () => {
    const post = (body: object, session?: string) =>
      fetch(`${origin}/json/mcp`, {
        method: "POST",
        headers: {
          ...POST_HEADERS,
          ...bearer(KEYS.ci),
          ...(session && { "mcp-session-id": session, "mcp-protocol-version": "2025-11-25" }),
        },
        body: JSON.stringify(body),
      });
    const init = await post({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: {
        protocolVersion: "2025-11-25",
        capabilities: {},
        clientInfo: { name: "t", version: "1" },
      },
    });
    const session = init.headers.get("mcp-session-id") ?? "";
    await init.text();
    const res = await post({ jsonrpc: "2.0", id: 2, method: "tools/list" }, session);
    const body = Buffer.from(await res.arrayBuffer());
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(res.headers.get("content-length")).toBe(String(body.length));
    const { result } = JSON.parse(body.toString("utf8")) as {
      result: { tools: { name: string }[] };
    };
    expect(result.tools.map((tool) => tool.name)).toEqual(["echo"]);
  });

  it("denies a call by rule: 403 with a JSON-RPC error, audited with the rule, nothing forwarded", async () => {
    const denied = await call(KEYS.ci, "countdown", { steps: 1 });
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.text)).toMatchObject({
      jsonrpc: "2.0",
      id: 31,
      error: { code: -32003, data: { error: "policy_denied", rule: "no-countdown-for-ci" } },
    });
    const record = (await gw.auditRecords(1)).at(-1);
    expect(record).toMatchObject({
      action: "deny",
      rule: "no-countdown-for-ci",
      tool: "countdown",
      key_id: "ci",
      status: 403,
    });
    const client = await connectClient(gw.url, bearer(KEYS.ci));
    const echoed = await client.client.callTool({ name: "echo", arguments: { message: "ok" } });
    expect(JSON.stringify(echoed)).toContain("ok");
    await client.close();
  });

  it("asks for the scopes a rule requires, with the insufficient_scope challenge", async () => {
    const refused = await call(KEYS.reader, "add", { a: 1, b: 2 });
    expect(refused.status).toBe(403);
    expect(refused.challenge).toContain('error="insufficient_scope"');
    expect(refused.challenge).toContain('scope="mcp:admin"');
    expect(JSON.parse(refused.text)).toMatchObject({
      id: 31,
      error: { code: -32003, data: { scope: "mcp:admin" } },
    });
    const allowed = await call(KEYS.admin, "add", { a: 1, b: 2 });
    expect(allowed.status).toBe(200);
    expect(allowed.text).toContain("3");
  });

  it("judges every call of a batch", async () => {
    const res = await fetch(`${origin}/mcp`, {
      method: "POST",
      headers: { ...POST_HEADERS, ...bearer(KEYS.reader) },
      body: JSON.stringify([
        {
          jsonrpc: "2.0",
          id: 1,
          method: "tools/call",
          params: { name: "echo", arguments: { message: "a" } },
        },
        {
          jsonrpc: "2.0",
          id: 2,
          method: "tools/call",
          params: { name: "inspect-request", arguments: {} },
        },
      ]),
    });
    expect(res.status).toBe(403);
    await res.text();
    expect((await gw.auditRecords(1)).at(-1)).toMatchObject({
      method: "batch",
      rule: "no-inspection",
    });
  });

  it("takes new rules on reload", async () => {
    await gw.writeConfig(await config(false));
    await gw.gateway.reload("SIGHUP");
    expect((await call(KEYS.ci, "countdown", { steps: 1 })).status).toBe(200);
    expect(await toolNames("/mcp", KEYS.ci)).toEqual(["countdown", "echo"]);
  });

  it("mcpgw explain names the deciding rule", async () => {
    let out = "";
    const sink = new Writable({
      write(chunk, _encoding, done) {
        out += chunk.toString();
        done();
      },
    });
    await gw.writeConfig(await config(true));
    await explain(
      gw.configFile,
      { keyId: "ci", method: "tools/call", tool: "countdown", scopes: [] },
      sink,
      sink,
    );
    await explain(
      gw.configFile,
      { keyId: "reader", method: "tools/call", tool: "add", scopes: ["mcp:read"] },
      sink,
      sink,
    );
    await explain(
      gw.configFile,
      { keyId: "ci", method: "tools/call", tool: "echo", scopes: [] },
      sink,
      sink,
    );
    expect(out.split("\n")).toEqual([
      "deny: rule no-countdown-for-ci",
      "deny (403 insufficient_scope): rule adding-needs-admin requires mcp:admin; missing mcp:admin",
      "allow: the default",
      "",
    ]);
  });
});

describe("the policy with 2026-07-28 clients and under load", () => {
  it("filters a stateless tools/list and marks it private to the caller", async () => {
    const modern = await startSdk2Server();
    const local = await startGateway({
      upstream: { url: modern.url },
      auth: { keys: [{ id: "ci", hash: await cheapHash(KEYS.ci) }] },
      policy: {
        default: "deny",
        rules: [
          { id: "lists", match: { method: "tools/list" }, effect: "allow" },
          { id: "echo-only", match: { method: "tools/call", tool: "echo" }, effect: "allow" },
        ],
      },
    });
    try {
      const res = await fetch(local.url, {
        method: "POST",
        headers: {
          ...POST_HEADERS,
          ...bearer(KEYS.ci),
          "mcp-protocol-version": "2026-07-28",
          "mcp-method": "tools/list",
        },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 3,
          method: "tools/list",
          params: {
            _meta: {
              "io.modelcontextprotocol/protocolVersion": "2026-07-28",
              "io.modelcontextprotocol/clientCapabilities": {},
            },
          },
        }),
      });
      expect(res.status).toBe(200);
      const text = await res.text();
      // JSON or one SSE event: the result either way.
      const json = text.startsWith("{") ? text : (/^data: (.*)$/m.exec(text)?.[1] ?? "{}");
      const { result } = JSON.parse(json) as {
        result: { tools: { name: string }[]; cacheScope: string };
      };
      expect(result.tools.map((tool) => tool.name)).toEqual(["echo"]);
      expect(result.cacheScope).toBe("private");
    } finally {
      await local.stop();
      await modern.close();
    }
  });

  it("applies a reload's rules from the next request while requests keep flowing", async () => {
    let stop = false;
    const statuses: number[] = [];
    const traffic = (async () => {
      while (!stop) statuses.push((await call(KEYS.reader, "echo", { message: "x" })).status);
    })();
    await gw.writeConfig(await config(true));
    await gw.gateway.reload("SIGHUP");
    expect((await call(KEYS.ci, "countdown", { steps: 1 })).status).toBe(403);
    await gw.writeConfig(await config(false));
    await gw.gateway.reload("SIGHUP");
    expect((await call(KEYS.ci, "countdown", { steps: 1 })).status).toBe(200);
    stop = true;
    await traffic;
    expect(statuses.length).toBeGreaterThan(0);
    expect(statuses.every((status) => status === 200)).toBe(true);
  });
});
