/**
 * In Chromium, the redirect from the consent form back to the client's redirect URI, then the
 * code exchange and a tools/list with the token; and Deny. The pages once sent
 * `form-action 'self'`, which browsers apply to the redirects after a form post too: the
 * redirect to the client (another origin) was blocked, which the headless driver of
 * test/helpers/login-driver.ts, following redirects without CSP, could not see.
 */
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import {
  type AuthorizationRequest,
  authorizationRequest,
  launchChromium,
  newPage,
  type RedirectReceiver,
  registerPublicClient,
  startRedirectReceiver,
} from "../helpers/browser-client.js";
import { unusedPortUrl } from "../helpers/fake-upstreams.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { INITIALIZE, POST_HEADERS, TOOLS_LIST } from "../helpers/mcp-client.js";

const USERNAME = "alice";
const PASSWORD = "correct horse battery staple";

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

/** Signs in in Chromium, presses `button` on the consent page, returns the redirect's query. */
async function authorize(
  button: "Allow" | "Deny",
): Promise<{ request: AuthorizationRequest; clientId: string; query: URLSearchParams }> {
  const clientId = await registerPublicClient(origin, "Browser Test Client", callback.uri);
  const request = authorizationRequest({
    issuer: origin,
    clientId,
    redirectUri: callback.uri,
    scope: "mcp:read",
    resource: `${origin}/mcp`,
  });
  const page = await newPage(browser);
  await page.goto(request.url);
  await page.getByLabel("Username").fill(USERNAME);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  const redirected = callback.next();
  await page.getByRole("button", { name: button }).click();
  await page.waitForURL((url) => url.href.startsWith(callback.uri), { timeout: 5_000 });
  const query = await redirected;
  await page.context().close();
  return { request, clientId, query };
}

describe("Chromium back at the client after consent", () => {
  it("brings a code the client exchanges for a token that lists the tools", async () => {
    const { request, clientId, query } = await authorize("Allow");
    expect(query.get("state")).toBe(request.state);
    expect(query.get("iss")).toBe(origin);
    const code = query.get("code");
    expect(code).toBeTruthy();

    const tokenResponse = await fetch(`${origin}/oauth/token`, {
      method: "POST",
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code: code as string,
        redirect_uri: callback.uri,
        client_id: clientId,
        code_verifier: request.verifier,
        resource: `${origin}/mcp`,
      }),
    });
    expect(tokenResponse.status).toBe(200);
    expect(tokenResponse.headers.get("cache-control")).toBe("no-store");
    const tokens = (await tokenResponse.json()) as { access_token: string; token_type: string };
    expect(tokens.token_type).toBe("Bearer");

    const authorization = `Bearer ${tokens.access_token}`;
    const initialized = await fetch(`${origin}/mcp`, {
      method: "POST",
      headers: { ...POST_HEADERS, authorization },
      body: INITIALIZE,
    });
    expect(initialized.status).toBe(200);
    await initialized.arrayBuffer();
    const session = { "mcp-session-id": initialized.headers.get("mcp-session-id") ?? "" };
    const listed = await fetch(`${origin}/mcp`, {
      method: "POST",
      headers: { ...POST_HEADERS, ...session, authorization },
      body: TOOLS_LIST,
    });
    expect(listed.status).toBe(200);
    const { result } = (await listed.json()) as { result: { tools: { name: string }[] } };
    expect(result.tools.map((tool) => tool.name)).toContain("echo");
    const record = (await gw.auditRecords(2)).find((line) => line.method === "tools/list");
    expect(record).toMatchObject({ auth_type: "oauth", auth_result: "ok", sub: USERNAME });
  });

  it("brings access_denied and the state, without a code, after Deny", async () => {
    const { request, query } = await authorize("Deny");
    expect(query.get("error")).toBe("access_denied");
    expect(query.get("state")).toBe(request.state);
    expect(query.has("code")).toBe(false);
  });
});
