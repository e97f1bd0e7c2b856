/**
 * mcp-remote, the stdio-to-HTTP bridge many desktop MCP clients are configured with, in front of
 * the gateway and its embedded authorization server: it meets the 401, discovers the server,
 * registers with DCR and opens "the browser" for the login. Its browser is browser-handoff.mjs
 * (through `BROWSER`, which the `open` package's xdg-open honours), which hands the URL over to
 * this test; the test signs in and allows on the gateway's pages (login-driver.ts) and requests
 * the redirect URI, so that mcp-remote's callback server gets the code. An SDK client on
 * mcp-remote's stdio side then lists the tools.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { unusedPortUrl } from "../helpers/fake-upstreams.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { type LoginOutcome, logInAndConsent } from "../helpers/login-driver.js";

const USER = { username: "alice", password: "correct horse battery staple" };
const MCP_REMOTE = path.resolve(import.meta.dirname, "../../node_modules/mcp-remote/dist/proxy.js");
const HANDOFF_SCRIPT = path.resolve(import.meta.dirname, "../helpers/browser-handoff.mjs");

let upstream: ExampleServer;
let gw: TestGateway;
let origin: string;
let configDir: string;
let handoff: Server;
/** Each authorization URL mcp-remote opened, with what the login gave. */
const logins: { url: URL; outcome: LoginOutcome }[] = [];

beforeAll(async () => {
  upstream = await startExampleServer();
  const port = new URL(await unusedPortUrl()).port;
  origin = `http://127.0.0.1:${port}`;
  gw = await startGateway({
    listen: `127.0.0.1:${port}`,
    upstream: { url: upstream.url },
    auth: { oauth: { required_scopes: ["mcp:read"] } },
    authorization_server: {
      enabled: true,
      issuer: origin,
      users: [
        {
          username: USER.username,
          password_hash: await cheapHash(USER.password),
          scopes: ["mcp:read"],
        },
      ],
    },
  });
  configDir = await mkdtemp(path.join(tmpdir(), "mcpgw-mcp-remote-"));
  // The user at the browser: signs in, allows, and lets the browser follow the redirect.
  handoff = createServer(async (req, res) => {
    try {
      let body = "";
      for await (const chunk of req) body += chunk;
      const url = new URL(body);
      const redirectUri = url.searchParams.get("redirect_uri") ?? "";
      const outcome = await logInAndConsent(url, redirectUri, USER);
      logins.push({ url, outcome });
      const delivered = await fetch(outcome.redirect);
      await delivered.arrayBuffer();
      res.writeHead(delivered.ok ? 200 : 502).end();
    } catch (error) {
      res.writeHead(500).end(String(error));
    }
  });
  await new Promise<void>((resolve) => handoff.listen(0, "127.0.0.1", resolve));
});

afterAll(async () => {
  handoff?.close();
  await gw?.stop();
  await upstream?.close();
  if (configDir) await rm(configDir, { recursive: true, force: true });
});

describe("mcp-remote in front of the gateway", () => {
  it("signs in through the embedded authorization server and lists the tools over stdio", async () => {
    const callbackPort = new URL(await unusedPortUrl()).port;
    const { port } = handoff.address() as AddressInfo;
    let stderr = "";
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [MCP_REMOTE, `${origin}/mcp`, callbackPort, "--host", "127.0.0.1"],
      env: {
        PATH: process.env.PATH ?? "",
        HOME: configDir,
        MCP_REMOTE_CONFIG_DIR: configDir,
        BROWSER: `${process.execPath} ${HANDOFF_SCRIPT}`,
        MCPGW_BROWSER_HANDOFF: `http://127.0.0.1:${port}/`,
      },
      stderr: "pipe",
    });
    transport.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const client = new Client({ name: "mcpgw-test", version: "0" });
    try {
      await client.connect(transport);
      const { tools } = await client.listTools();
      expect(tools.map((tool) => tool.name)).toContain("echo");
    } catch (error) {
      throw new Error(`${error}\nmcp-remote stderr:\n${stderr}`);
    } finally {
      await client.close();
    }
    expect(logins).toHaveLength(1);
    const [login] = logins;
    expect(login?.outcome.pages).toEqual(["login", "consent"]);
    expect(login?.url.searchParams.get("code_challenge_method")).toBe("S256");
    expect(login?.outcome.redirect.searchParams.get("iss")).toBe(origin);
    const record = (await gw.auditRecords(1)).find((line) => line.method === "tools/list");
    expect(record).toMatchObject({ auth_type: "oauth", auth_result: "ok", sub: USER.username });
  });
});
