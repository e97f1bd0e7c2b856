/**
 * Stands in for the user's browser when an MCP client opens one (`BROWSER="node <this file>"`):
 * hands the URL over to the test at `$MCPGW_BROWSER_HANDOFF` and exits 0 once the test has signed
 * in, allowed, and delivered the redirect to the client's callback, 1 if it could not.
 */
const [url] = process.argv.slice(2);
const handoff = process.env.MCPGW_BROWSER_HANDOFF;
if (url === undefined || !handoff) {
  console.error(
    "browser-handoff: usage: MCPGW_BROWSER_HANDOFF=<url> node browser-handoff.mjs <url>",
  );
  process.exit(2);
}
const res = await fetch(handoff, { method: "POST", body: url });
process.exit(res.ok ? 0 : 1);
