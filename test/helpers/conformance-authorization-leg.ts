/**
 * Runs the MCP conformance suite's `authorization` leg (`@modelcontextprotocol/conformance`)
 * against an authorization server, with a user who logs in: the CLI prints the authorization URL
 * and waits for the redirect on its own callback server (`http://127.0.0.1:<port>/callback`);
 * here the login and consent pages are driven headless (login-driver.ts) and the redirect is
 * delivered to that callback server, as the user's browser would. The CLI needs Node 22 or
 * later: `node` is the pinned Node 24 of `.ci/node24`.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { logInAndConsent } from "./login-driver.js";

const packageDir = path.dirname(
  createRequire(import.meta.url).resolve("@modelcontextprotocol/conformance/package.json"),
);
const CLI = path.join(packageDir, "dist/index.js");

export interface Check {
  id: string;
  status: "SUCCESS" | "FAILURE" | "WARNING" | "SKIPPED" | "INFO";
  errorMessage?: string;
}

export interface AuthorizationLeg {
  /** The checks of each scenario, by scenario name. */
  scenarios: Map<string, Check[]>;
  /** The CLI's arguments after the script, to reproduce the run. */
  args: string[];
  exitCode: number | null;
  stdout: string;
}

export async function runAuthorizationLeg(
  node: string,
  options: {
    issuer: string;
    clientId: string;
    resource: string;
    callbackPort: number;
    user: { username: string; password: string };
  },
): Promise<AuthorizationLeg> {
  const output = await mkdtemp(path.join(tmpdir(), "mcpgw-conformance-as-"));
  const args = [
    "authorization",
    ...["--url", options.issuer, "--client-id", options.clientId],
    ...["--resource", options.resource, "--port", String(options.callbackPort)],
    ...["--output-dir", output],
  ];
  const child = spawn(node, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
  let stdout = "";
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const redirectUri = `http://127.0.0.1:${options.callbackPort}/callback`;
  let callbackListening: () => void = () => {};
  const callbackReady = new Promise<void>((resolve) => {
    callbackListening = resolve;
  });
  let login: Promise<void> | undefined;
  let loginFailed: unknown;
  for await (const line of createInterface({ input: child.stdout })) {
    stdout += `${line}\n`;
    if (line.startsWith(`Callback server started: http://127.0.0.1:${options.callbackPort}`)) {
      callbackListening();
    }
    // The authorization URL; the CLI's callback server may start listening just after it.
    if (line.startsWith(`${options.issuer}/oauth/authorize?`) && login === undefined) {
      login = (async () => {
        const { redirect } = await logInAndConsent(new URL(line), redirectUri, options.user);
        await callbackReady;
        const delivered = await fetch(redirect);
        await delivered.arrayBuffer();
      })().catch((error: unknown) => {
        // The CLI would wait five minutes for a redirect that is not coming.
        loginFailed = error;
        child.kill();
      });
    }
  }
  await login;
  const exitCode = await exited;
  if (loginFailed !== undefined) throw loginFailed;
  if (exitCode !== 0 && exitCode !== 1) {
    throw new Error(`conformance exited with ${exitCode}:\n${stdout}\n${stderr}`);
  }
  const scenarios = new Map<string, Check[]>();
  for (const entry of await readdir(output)) {
    // One folder per scenario: authorization-server-<scenario>-<ISO time, ':' and '.' as '-'>.
    const scenario = /^authorization-server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/.exec(entry)?.[1];
    if (scenario === undefined) continue;
    const checks = JSON.parse(await readFile(path.join(output, entry, "checks.json"), "utf8"));
    scenarios.set(scenario, checks as Check[]);
  }
  return { scenarios, args, exitCode, stdout };
}
