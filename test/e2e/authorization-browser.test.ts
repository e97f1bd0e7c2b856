/**
 * The embedded authorization server's login and consent pages in a real browser (Debian's
 * Chromium, driven by playwright-core): a public client registered with DCR sends the user to an
 * authorization URL with PKCE S256 and the RFC 8707 resource; the user signs in with the keyboard
 * alone and reaches the consent page, which names the client, the scope and the MCP endpoint.
 *
 * The redirect back to the client after Allow or Deny, the code exchange and the tools/list with
 * the token are in authorization-browser-redirect.test.ts.
 *
 * `MCPGW_UPDATE_SCREENSHOTS=1` writes the login and consent pages to
 * docs/images/authorization-{login,consent}.png (800x600). Otherwise the screenshots are only
 * taken and checked, so that a test run leaves the work tree as it was (the consent page shows
 * the gateway's random port).
 */
import { writeFile } from "node:fs/promises";
import path from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import {
  authorizationRequest,
  focusedElement,
  launchChromium,
  newPage,
  type RedirectReceiver,
  registerPublicClient,
  startRedirectReceiver,
} from "../helpers/browser-client.js";
import { unusedPortUrl } from "../helpers/fake-upstreams.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";

const USERNAME = "alice";
const PASSWORD = "correct horse battery staple";
const CLIENT_NAME = "Browser Test Client";
const IMAGES = path.resolve(import.meta.dirname, "../../docs/images");

let upstream: ExampleServer;
let gw: TestGateway;
let origin: string;
let browser: Browser;
let callback: RedirectReceiver;

beforeAll(async () => {
  upstream = await startExampleServer({ jsonResponse: true });
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
        { username: USERNAME, password_hash: await cheapHash(PASSWORD), scopes: ["mcp:read"] },
      ],
    },
  });
  callback = await startRedirectReceiver();
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  callback?.close();
  await gw?.stop();
  await upstream?.close();
});

async function openAuthorizationUrl(): Promise<Page> {
  const clientId = await registerPublicClient(origin, CLIENT_NAME, callback.uri);
  const request = authorizationRequest({
    issuer: origin,
    clientId,
    redirectUri: callback.uri,
    scope: "mcp:read",
    resource: `${origin}/mcp`,
  });
  const page = await newPage(browser);
  await page.goto(request.url);
  return page;
}

async function screenshot(page: Page, name: string): Promise<void> {
  const png = await page.screenshot();
  expect(png.subarray(1, 4).toString("latin1")).toBe("PNG");
  // IHDR: width and height, big-endian, at bytes 16 and 20.
  expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([800, 600]);
  if (process.env.MCPGW_UPDATE_SCREENSHOTS === "1") {
    await writeFile(path.join(IMAGES, `authorization-${name}.png`), png);
  }
}

describe("the login and consent pages in Chromium", () => {
  it("let a user sign in with the keyboard alone and show what the client asks for", async () => {
    const page = await openAuthorizationUrl();
    await expect(page.title()).resolves.toBe("Sign in · mcpgw");
    await page.getByText(CLIENT_NAME).waitFor();
    // WCAG 2.1.1: the form works from the keyboard, starting in the username field.
    expect(await focusedElement(page)).toBe("input#username:");
    await page.keyboard.type(USERNAME);
    await page.keyboard.press("Tab");
    expect(await focusedElement(page)).toBe("input#password:");
    await page.keyboard.type(PASSWORD);
    await page.keyboard.press("Tab");
    expect(await focusedElement(page)).toBe("button#:Sign in");
    await expect(page.getByLabel("Username").inputValue()).resolves.toBe(USERNAME);
    await expect(page.getByLabel("Password").inputValue()).resolves.toBe(PASSWORD);
    await screenshot(page, "login");

    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Allow access?" }).waitFor();
    await expect(page.title()).resolves.toBe("Allow access · mcpgw");
    const consent = await page.locator("main").textContent();
    expect(consent).toContain(`Signed in as ${USERNAME}.`);
    expect(consent).toContain(`${CLIENT_NAME} asks for:`);
    expect(consent).toContain("mcp:read");
    expect(consent).toContain(`${origin}/mcp`);
    expect(await focusedElement(page)).toBe("button#:Allow");
    await screenshot(page, "consent");
    await page.keyboard.press("Tab");
    expect(await focusedElement(page)).toBe("button#:Deny");
    await page.context().close();
  });

  it("keep the user on the login page, with the error announced, after a wrong password", async () => {
    const page = await openAuthorizationUrl();
    await page.getByLabel("Username").fill(USERNAME);
    await page.getByLabel("Password").fill("wrong");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByRole("alert").textContent()).resolves.toBe(
      "Wrong username or password.",
    );
    await expect(page.getByLabel("Username").inputValue()).resolves.toBe(USERNAME);
    await expect(page.getByLabel("Password").inputValue()).resolves.toBe("");
    expect(await focusedElement(page)).toBe("input#username:");
    await page.context().close();
  });
});
