/**
 * `npm start`: the example MCP server plus mcpgw in front of it, configured by
 * examples/demo.yaml, so the gateway can be tried with nothing but curl.
 *
 * The example server runs in this process; the gateway runs as a child exactly as a user would
 * run it, and this process exits with the gateway's exit code.
 */
import { spawn } from "node:child_process";
import { constants } from "node:os";
import { fileURLToPath } from "node:url";
import { startExampleServer } from "./mcp-server.js";

// examples/demo.yaml points upstream.url at this port.
const UPSTREAM_PORT = 3001;
const GATEWAY_URL = "http://127.0.0.1:8080/mcp";
// The second route of examples/demo.yaml: server-everything over stdio.
const STDIO_ROUTE_URL = "http://127.0.0.1:8080/everything/mcp";
// Published in the README and hashed in examples/demo.yaml: they protect nothing.
const DEMO_API_KEY = "mcpgw-demo-key-do-not-use-in-production";
const DEMO_PASSWORD = "mcpgw-demo-password-do-not-use-in-production";
const FORWARDED_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

// Compiled to dist/examples/demo.js, so the repository root is two levels up.
const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

function banner(upstreamUrl: string): string {
  const headers = [
    `-H 'Authorization: Bearer ${DEMO_API_KEY}'`,
    "-H 'Content-Type: application/json'",
    "-H 'Accept: application/json, text/event-stream'",
  ].join(" ");
  const listTools = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" });
  return `
mcpgw demo
  routes:              ${GATEWAY_URL}  ->  ${upstreamUrl} (example server, HTTP)
                       ${STDIO_ROUTE_URL}  ->  server-everything (stdio,
                       one child process per MCP session)
  API key:             ${DEMO_API_KEY}
                       DEMO ONLY: this key is public. Never use it in production.

Try it: list the tools through the gateway (the example server answers a request without
a session statelessly; MCP clients such as the SDK or MCP Inspector initialize a session):

  curl -s ${GATEWAY_URL} ${headers} -d '${listTools}'

The stdio route needs a session, as MCP clients make one: e.g. MCP Inspector on
${STDIO_ROUTE_URL} with the header Authorization: Bearer ${DEMO_API_KEY}

Or log in through the browser, as OAuth MCP clients do: point MCP Inspector (or mcp-remote)
at ${GATEWAY_URL} without a header; it finds the gateway's authorization server from the
401, opens its login page: user demo, password ${DEMO_PASSWORD}
(DEMO ONLY, published like the key).

Without the key, or with a wrong one, the gateway answers 401 with a WWW-Authenticate challenge.
Every request is written to ./audit.jsonl: tail -f audit.jsonl | jq

Ctrl-C stops both; press it twice to skip the gateway's graceful drain.
`;
}

async function main(): Promise<void> {
  const upstream = await startExampleServer({ port: UPSTREAM_PORT });
  process.stderr.write(banner(upstream.url));

  const gateway = spawn(
    process.execPath,
    [`${repoRoot}dist/src/main.js`, "run", "--config", `${repoRoot}examples/demo.yaml`],
    {
      stdio: "inherit",
      // Own process group, so a Ctrl-C reaches the gateway once, through the forwarding below,
      // and not also from the terminal: a second SIGINT makes it skip its graceful drain.
      detached: process.platform !== "win32",
    },
  );

  for (const signal of FORWARDED_SIGNALS) {
    process.on(signal, () => gateway.kill(signal));
  }
  // Being in its own process group, the gateway would outlive a crash of this process.
  process.on("exit", () => {
    if (gateway.exitCode === null && gateway.signalCode === null) gateway.kill("SIGTERM");
  });

  const exitCode = await new Promise<number>((resolve) => {
    gateway.once("error", (error) => {
      process.stderr.write(`demo: cannot start the gateway: ${error.message}\n`);
      resolve(1);
    });
    gateway.once("exit", (code, signal) => {
      // Shell convention for death by signal, so `npm start` reports it faithfully.
      resolve(code ?? 128 + (signal === null ? 0 : constants.signals[signal]));
    });
  });
  await upstream.close();
  process.exitCode = exitCode;
}

main().catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  const portTaken = error instanceof Error && "code" in error && error.code === "EADDRINUSE";
  const hint = portTaken ? ` (port ${UPSTREAM_PORT} is taken: stop what listens there)` : "";
  process.stderr.write(`demo: ${message}${hint}\n`);
  process.exitCode = 1;
});
