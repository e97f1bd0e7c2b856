/**
 * A user at a browser, without the browser: follows an authorization URL through the
 * gateway's login and consent pages with a cookie jar, fills in the forms as a person would,
 * and stops at the redirect back to the client. For headless tests of the authorization code
 * flow; a real Chromium runs the same pages elsewhere.
 */

export interface LoginOutcome {
  /** The redirect back to the client: `code`, `state`, `iss` (or `error`). */
  redirect: URL;
  /** The HTML pages seen on the way, in order ("login", "consent"). */
  pages: string[];
}

export async function logInAndConsent(
  authorizationUrl: URL,
  redirectUri: string,
  credentials: { username: string; password: string },
  decision: "allow" | "deny" = "allow",
): Promise<LoginOutcome> {
  // Cookies by host, as a browser keeps them (not by port): an identity provider on another
  // host keeps its own.
  const jars = new Map<string, Map<string, string>>();
  const jarOf = (url: string) => {
    const host = new URL(url).hostname;
    let jar = jars.get(host);
    if (jar === undefined) {
      jar = new Map();
      jars.set(host, jar);
    }
    return jar;
  };
  const pages: string[] = [];
  let next = authorizationUrl.href;
  let form: URLSearchParams | undefined;
  for (let step = 0; step < 20; step++) {
    const jar = jarOf(next);
    const res = await fetch(next, {
      method: form ? "POST" : "GET",
      redirect: "manual",
      headers: {
        cookie: [...jar].map(([name, value]) => `${name}=${value}`).join("; "),
        ...(form && { "content-type": "application/x-www-form-urlencoded" }),
      },
      ...(form && { body: form.toString() }),
    });
    for (const cookie of res.headers.getSetCookie()) {
      const [pair = ""] = cookie.split(";");
      const at = pair.indexOf("=");
      jar.set(pair.slice(0, at).trim(), pair.slice(at + 1).trim());
    }
    if (res.status >= 300 && res.status < 400) {
      const location = new URL(res.headers.get("location") ?? "", next);
      await res.arrayBuffer();
      if (location.href.startsWith(redirectUri)) return { redirect: location, pages };
      next = location.href;
      form = undefined;
      continue;
    }
    const html = await res.text();
    const refusal = /<p class="error" role="alert">([^<]*)<\/p>/.exec(html)?.[1];
    if (refusal !== undefined) throw new LoginRefused(res.status, refusal);
    const action = /<form method="post" action="([^"]+)"/.exec(html)?.[1];
    if (action === undefined) {
      throw new Error(`HTTP ${res.status} at ${next}, no form: ${html.slice(0, 400)}`);
    }
    next = new URL(action.replace(/&amp;/g, "&"), next).href;
    if (html.includes('name="password"')) {
      pages.push("login");
      form = new URLSearchParams(credentials);
    } else if (html.includes('name="decision"')) {
      pages.push("consent");
      form = new URLSearchParams({ decision });
    } else {
      throw new Error(`unexpected page at ${next}: ${html.slice(0, 400)}`);
    }
  }
  throw new Error("too many steps before the redirect back to the client");
}

/** The page answered with an error instead of going on (wrong password, throttled, expired). */
export class LoginRefused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "LoginRefused";
  }
}
