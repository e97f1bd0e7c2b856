/**
 * Out of the suite (no `.test.ts`) until it passes: in Chromium, the redirect from the consent
 * form back to the client's redirect URI, then the code exchange and a tools/list with the token.
 *
 * It fails today. The login and consent pages are served with
 * `Content-Security-Policy: ... form-action 'self'`, and CSP Level 3 applies `form-action` to
 * every redirect that follows a form submission: the POST of Allow (or Deny) answers 303 to
 * `/oauth/authorize/<uid>`, which answers 303 to the client's redirect URI on another origin
 * (a loopback port, a custom scheme), and Chromium aborts that navigation (net::ERR_ABORTED,
 * console: `Sending form data to '<issuer>/oauth/interaction/<uid>' violates the following
 * Content Security Policy directive: "form-action 'self'"`). The user stays on the consent page;
 * the client never gets its code. The headless driver of test/helpers/login-driver.ts follows
 * redirects without CSP, so the integration tests do not see it. With CSP bypassed in the
 * browser context (`bypassCSP: true`) both tests pass.
 *
 * Run it: `cp test/e2e/authorization-browser-redirect.failing.ts test/e2e/x.test.ts &&
 * npx vitest run test/e2e/x.test.ts`; rename it to `.test.ts` once it passes.
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
