/**
 * Per-user delegation as its user meets it, in a real browser: the official SDK client cannot
 * connect (JSON-RPC error -32042 with the connect URL), the user opens the URL in Debian's
 * Chromium (playwright-core), passes the upstream's provider (oidc-provider, PKCE) and lands on
 * the gateway's "Account connected" page; then the same client connects and calls the tool.
 *
 * `MCPGW_UPDATE_SCREENSHOTS=1` writes the page to docs/images/upstream-connected.png.
 */
import { rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { launchChromium, newPage } from "../helpers/browser-client.js";
import { freePort } from "../helpers/fake-upstreams.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { connectClient, textOf } from "../helpers/mcp-client.js";
import { startTokenServer, type TokenServer } from "../helpers/token-server.js";

const KEY = "browser-connect-key-0123456789";
const RESOURCE = "https://tickets.example.test/mcp";
const IMAGES = path.join(import.meta.dirname, "../../docs/images");

let browser: Browser;
let tokens: TokenServer;
let upstream: ExampleServer;
let gw: TestGateway;
let url: string;
const stateDir = path.join(tmpdir(), `mcpgw-connect-${process.pid}`);

beforeAll(async () => {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  tokens = await startTokenServer({
    clientId: "mcpgw",
    clientSecret: "browser-connect-secret",
    resource: RESOURCE,
    ttl: 600,
    authorizationCode: { redirectUri: `${origin}/oauth/callback`, user: "dana@tickets" },
  });
  [browser, upstream] = await Promise.all([
    launchChromium(),
    startExampleServer({ verifyToken: (token) => tokens.verify(token) }),
  ]);
  gw = await startGateway({
    listen: `127.0.0.1:${port}`,
    secrets: {
      encryption_key: "browser-connect-encryption-key-0123456789",
      state_dir: stateDir,
    },
    auth: { keys: [{ id: "dana", hash: await cheapHash(KEY) }] },
    routes: [
      {
        path: "/tickets/mcp",
        upstream: {
          url: upstream.url,
          auth: {
            type: "authorization_code",
            authorization_url: tokens.authorizationUrl,
            token_url: tokens.tokenUrl,
            client_id: "mcpgw",
            client_secret: "browser-connect-secret",
            scopes: ["upstream:read"],
            resource: RESOURCE,
          },
        },
      },
    ],
  });
  url = `${origin}/tickets/mcp`;
});

afterAll(async () => {
  await browser?.close();
  await gw?.stop();
  await Promise.all([upstream?.close(), tokens?.close()]);
  await rm(stateDir, { recursive: true, force: true });
});

describe("connecting an upstream account in Chromium", () => {
  it("takes the user from the SDK client's -32042 error to a working tool call", async () => {
    const refused = await connectClient(url, { authorization: `Bearer ${KEY}` }).catch(
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(McpError);
    const { code, data } = refused as McpError;
    expect(code).toBe(-32042);
    const [elicitation] = (data as { elicitations: { mode: string; url: string }[] }).elicitations;
    expect(elicitation?.mode).toBe("url");

    const page = await newPage(browser);
    const response = await page.goto(elicitation?.url as string);
    expect(response?.status()).toBe(200);
    expect(new URL(page.url()).pathname).toBe("/oauth/callback");
    await expect(page.locator("h1").textContent()).resolves.toBe("Account connected");
    const png = await page.screenshot();
    expect(png.subarray(1, 4).toString("latin1")).toBe("PNG");
    if (process.env.MCPGW_UPDATE_SCREENSHOTS === "1") {
      await writeFile(path.join(IMAGES, "upstream-connected.png"), png);
    }

    const connected = await connectClient(url, { authorization: `Bearer ${KEY}` });
    const result = await connected.client.callTool({ name: "echo", arguments: { message: "ok" } });
    expect(textOf(result)).toBe("ok");
    await connected.close();
  });
});
