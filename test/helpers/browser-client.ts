/**
 * An MCP client application and its user, with a real browser: Debian's Chromium driven by
 * playwright-core, a public client registered with DCR (RFC 7591), an authorization URL with
 * PKCE S256 (RFC 7636) and the RFC 8707 resource, and a loopback redirect URI (RFC 8252 §7.3)
 * served by a small node:http server that records what the authorization server sends back.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { type Browser, chromium, type Page } from "playwright-core";

/** Debian's `chromium` package; `.ci/run` installs it when missing. */
export const CHROMIUM = "/usr/bin/chromium";

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
}

/** A fresh browser profile (no cookies), 800x600 as the screenshots in docs/images. */
export async function newPage(browser: Browser): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 800, height: 600 } });
  return context.newPage();
}

/** What the focused element is, as `tag#id:text` (`input#username:`, `button#:Sign in`). */
export async function focusedElement(page: Page): Promise<string> {
  // Nothing focused fails within a second rather than the test's timeout.
  const focused = page.locator(":focus");
  const timeout = 1_000;
  const [tag, id, text] = await Promise.all([
    focused.evaluate((element) => element.tagName.toLowerCase(), undefined, { timeout }),
    focused.getAttribute("id", { timeout }),
    focused.textContent({ timeout }),
  ]);
  return `${tag}#${id ?? ""}:${text ?? ""}`;
}

export interface RedirectReceiver {
  uri: string;
  server: Server;
  /** Resolves with the query of the next request to the redirect URI. */
  next(): Promise<URLSearchParams>;
  close(): void;
}

export async function startRedirectReceiver(): Promise<RedirectReceiver> {
  const waiting: ((query: URLSearchParams) => void)[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    res.writeHead(200, { "content-type": "text/plain" }).end("You can close this window.");
    if (url.pathname === "/callback") waiting.shift()?.(url.searchParams);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    uri: `http://127.0.0.1:${port}/callback`,
    server,
    next: () => new Promise((resolve) => waiting.push(resolve)),
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

export {
  type AuthorizationRequest,
  authorizationRequest,
  registerPublicClient,
} from "./oauth-flow.js";
