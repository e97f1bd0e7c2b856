/**
 * The authorization server's pages: login, consent, errors. Server-rendered HTML with its style
 * inline and no script or external asset, so that they work with a restrictive CSP, with a
 * keyboard and a screen reader, and show nothing a caller could inject (every value escaped).
 */

const STYLE = `
  body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d1f23}
  main{max-width:26rem;margin:10vh auto;background:#fff;border-radius:8px;padding:2rem;
       box-shadow:0 1px 3px rgba(0,0,0,.15)}
  h1{font-size:1.35rem;margin:0 0 1rem}
  label{display:block;margin:.75rem 0 .25rem;font-weight:600}
  input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.55rem;
       border:1px solid #8a8f98;border-radius:4px;font:inherit}
  input:focus,button:focus{outline:3px solid #2563eb;outline-offset:2px}
  button{margin-top:1.25rem;padding:.6rem 1.2rem;border:0;border-radius:4px;font:inherit;
       background:#1d4ed8;color:#fff;cursor:pointer}
  button.secondary{background:#e5e7eb;color:#1d1f23;margin-left:.5rem}
  .error{background:#fee2e2;color:#7f1d1d;padding:.6rem;border-radius:4px}
  ul{padding-left:1.2rem} code{background:#f1f2f4;padding:0 .25rem;border-radius:3px}
  small{color:#4b5563}
`;

export function escapeHtml(text: string): string {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)} · mcpgw</title><style>${STYLE}</style></head>
<body><main>${body}</main></body></html>`;
}

export function loginPage(options: {
  action: string;
  clientName: string;
  username?: string;
  error?: string;
}): string {
  const error = options.error
    ? `<p class="error" role="alert">${escapeHtml(options.error)}</p>`
    : "";
  return page(
    "Sign in",
    `<h1>Sign in</h1>
<p><strong>${escapeHtml(options.clientName)}</strong> wants to use MCP servers behind this gateway on your behalf.</p>
${error}
<form method="post" action="${escapeHtml(options.action)}">
<label for="username">Username</label>
<input id="username" name="username" type="text" autocomplete="username" required autofocus value="${escapeHtml(options.username ?? "")}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>`,
  );
}

export function consentPage(options: {
  action: string;
  clientName: string;
  username: string;
  scopes: readonly string[];
  resources: readonly string[];
}): string {
  const scopes =
    options.scopes.length === 0
      ? "<p>No particular permission: only to call what every signed-in user may call.</p>"
      : `<ul>${options.scopes.map((scope) => `<li><code>${escapeHtml(scope)}</code></li>`).join("")}</ul>`;
  const resources = options.resources
    .map((resource) => `<li><code>${escapeHtml(resource)}</code></li>`)
    .join("");
  return page(
    "Allow access",
    `<h1>Allow access?</h1>
<p>Signed in as <strong>${escapeHtml(options.username)}</strong>.</p>
<p><strong>${escapeHtml(options.clientName)}</strong> asks for:</p>
${scopes}
<p><small>on</small></p><ul>${resources}</ul>
<form method="post" action="${escapeHtml(options.action)}">
<button type="submit" name="decision" value="allow" autofocus>Allow</button>
<button type="submit" name="decision" value="deny" class="secondary">Deny</button>
</form>`,
  );
}

export function errorPage(title: string, message: string): string {
  return page(
    title,
    `<h1>${escapeHtml(title)}</h1><p class="error" role="alert">${escapeHtml(message)}</p>
<p><small>Close this window and start again from your MCP client.</small></p>`,
  );
}
