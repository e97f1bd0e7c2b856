/**
 * Both protocol eras through one built `mcpgw run` to one upstream that serves both (an SDK v2
 * server): the SDK 2.4 client pinned to 2026-07-28 (no initialize, no session, version in
 * `_meta`, `Mcp-Method` / `Mcp-Name` headers) and the SDK 1.32 client (2025 era, initialize).
 */
import { Client as Client2026, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { CallToolResultSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { type Sdk2Server, startSdk2Server } from "../fixtures/sdk2-server.js";
import { type Daemon, killDaemons, startDaemon } from "../helpers/daemon.js";
import {
  type JwksServer,
  makeKey,
  type SigningKey,
  signToken,
  startJwksServer,
} from "../helpers/jwks-server.js";
import { cheapHash } from "../helpers/keys.js";
import { connectClient, textOf } from "../helpers/mcp-client.js";

const MODERN = "2026-07-28";
const AUDIENCE = "mcpgw-eras";
// One key per client, so each client's audit lines can be told apart.
const KEY_2026 = "era-2026-key-0123456789";
const KEY_2025 = "era-2025-key-0123456789";

let upstream: Sdk2Server;
let jwks: JwksServer;
let signingKey: SigningKey;
let daemon: Daemon;
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  signingKey = await makeKey("ES256");
  const [server, idp, hash2026, hash2025] = await Promise.all([
    startSdk2Server(),
    startJwksServer([signingKey]),
    cheapHash(KEY_2026),
    cheapHash(KEY_2025),
  ]);
  upstream = server;
  jwks = idp;
  daemon = await startDaemon(upstream.url, {
    auth: {
      keys: [
        { id: "era-2026", hash: hash2026 },
        { id: "era-2025", hash: hash2025 },
      ],
      oauth: { enabled: true, issuer: jwks.issuer, audience: AUDIENCE, jwks_url: jwks.url },
    },
  });
});

afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

afterAll(async () => {
  killDaemons();
  await upstream?.close();
  await jwks?.close();
});

/** The SDK 2.4 client, pinned to 2026-07-28, answering elicitations with `answer`. */
async function connect2026(
  authorization: string,
  answer: Record<string, string | number | boolean | string[]> = {},
) {
  const elicitations: string[] = [];
  const client = new Client2026(
    { name: "mcpgw-eras-test", version: "0" },
    { capabilities: { elicitation: {} }, versionNegotiation: { mode: { pin: MODERN } } },
  );
  client.setRequestHandler("elicitation/create", async (request) => {
    elicitations.push(request.params.message);
    return { action: "accept", content: answer };
  });
  const transport = new StreamableHTTPClientTransport(new URL(daemon.url), {
    requestInit: { headers: { authorization } },
  });
  await client.connect(transport);
  closers.push(() => client.close());
  return { client, elicitations };
}

function text2026(result: { content?: unknown }): string {
  const [first] = (result.content ?? []) as { type: string; text?: string }[];
  if (first?.type !== "text" || first.text === undefined)
    throw new Error(`expected text content, got ${JSON.stringify(result)}`);
  return first.text;
}

/** Waits for the audit lines `match` selects to number at least `count`. */
async function auditOf(match: (line: Record<string, unknown>) => boolean, count: number) {
  return vi.waitFor(
    async () => {
      const lines = (await daemon.auditLines()).filter(match);
      if (lines.length < count) throw new Error(`${lines.length} of ${count} audit lines`);
      return lines;
    },
    { timeout: 5000, interval: 25 },
  );
}

describe("the 2026-07-28 client (SDK 2.4) with an API key", () => {
  it("lists and calls echo, streams progress and completes a multi round-trip call", async () => {
    const { client, elicitations } = await connect2026(`Bearer ${KEY_2026}`, { confirm: true });
    expect(client.getNegotiatedProtocolVersion()).toBe(MODERN);

    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name)).toEqual(
      expect.arrayContaining(["echo", "countdown", "confirm_echo"]),
    );
    expect(text2026(await client.callTool({ name: "echo", arguments: { message: "hi" } }))).toBe(
      "hi",
    );

    const progress: number[] = [];
    const counted = await client.callTool(
      { name: "countdown", arguments: { steps: 3 } },
      { onprogress: ({ progress: step }) => progress.push(step) },
    );
    expect(text2026(counted)).toBe("done");
    expect(progress).toEqual([1, 2, 3]);

    const confirmed = await client.callTool({ name: "confirm_echo", arguments: { message: "x" } });
    expect(text2026(confirmed)).toBe("confirmed: x");
    expect(elicitations).toEqual(['Echo "x"?']);

    // No initialize and no session: every request stands alone, named in the audit by its
    // method and tool. confirm_echo is two requests, the first answered with input_required.
    const calls = await auditOf(
      (line) => line.key_id === "era-2026" && line.method === "tools/call",
      4,
    );
    expect(
      calls.map(({ session_id, method, tool, status }) => ({ session_id, method, tool, status })),
    ).toEqual(
      ["echo", "countdown", "confirm_echo", "confirm_echo"].map((tool) => ({
        session_id: null,
        method: "tools/call",
        tool,
        status: 200,
      })),
    );
    const all = await daemon.auditLines();
    const mine = all.filter((line) => line.key_id === "era-2026");
    expect(mine.some((line) => line.method === "initialize")).toBe(false);
    expect(mine.every((line) => line.session_id === null && line.status === 200)).toBe(true);
    expect(new Set(mine.map((line) => line.protocol_version))).toEqual(new Set(["2026-07-28"]));
    expect(mine.map((line) => line.method)).toEqual(
      expect.arrayContaining(["server/discover", "tools/list", "tools/call"]),
    );
  });
});

describe("the 2025 client (SDK 1.32) with an API key", () => {
  it("initializes, lists and calls echo and streams progress through the same route", async () => {
    const { client, close } = await connectClient(daemon.url, {
      authorization: `Bearer ${KEY_2025}`,
    });
    closers.push(close);

    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name)).toEqual(expect.arrayContaining(["echo", "countdown"]));
    expect(textOf(await client.callTool({ name: "echo", arguments: { message: "hello" } }))).toBe(
      "hello",
    );

    const progress: number[] = [];
    const counted = await client.callTool(
      { name: "countdown", arguments: { steps: 3 } },
      CallToolResultSchema,
      { onprogress: ({ progress: step }) => progress.push(step) },
    );
    expect(textOf(counted)).toBe("done");
    expect(progress).toEqual([1, 2, 3]);

    const mine = await auditOf(
      (line) => line.key_id === "era-2025" && line.method === "tools/call",
      2,
    );
    expect(mine.map(({ tool, status }) => ({ tool, status }))).toEqual([
      { tool: "echo", status: 200 },
      { tool: "countdown", status: 200 },
    ]);
    const initialize = (await daemon.auditLines()).filter(
      (line) => line.key_id === "era-2025" && line.method === "initialize",
    );
    expect(initialize.map((line) => line.status)).toEqual([200]);
  });
});

describe("the 2026-07-28 client with an OAuth access token", () => {
  it("calls echo, audited under the token's subject", async () => {
    const token = await signToken(signingKey, jwks.issuer, AUDIENCE, {
      claims: { sub: "era-user" },
    });
    const { client } = await connect2026(`Bearer ${token}`);
    expect(client.getNegotiatedProtocolVersion()).toBe(MODERN);
    expect(text2026(await client.callTool({ name: "echo", arguments: { message: "jwt" } }))).toBe(
      "jwt",
    );

    const [call] = await auditOf(
      (line) => line.sub === "era-user" && line.method === "tools/call",
      1,
    );
    expect(call).toMatchObject({
      session_id: null,
      method: "tools/call",
      tool: "echo",
      status: 200,
      auth_type: "oauth",
      auth_result: "ok",
      protocol_version: "2026-07-28",
    });
  });
});
