/**
 * Runs the MCP conformance suite's `server` leg (`@modelcontextprotocol/conformance`) against a
 * URL and reads its per-scenario `checks.json` files. The CLI needs Node 22 or later, so it runs
 * on the pinned Node 24 of `.ci/node24` whatever Node runs the tests.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { parse } from "yaml";

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "../..");
const packageDir = path.dirname(
  createRequire(import.meta.url).resolve("@modelcontextprotocol/conformance/package.json"),
);
const CLI = path.join(packageDir, "dist/index.js");
const AUTHORIZATION_HOOK = path.join(import.meta.dirname, "conformance-authorization.mjs");

/** The spec revisions the suite has frozen requirement sets for. */
export type Revision = "2025-11-25" | "2026-07-28";

export interface ScenarioResult {
  passed: boolean;
  /** Ids of the checks with status FAILURE. */
  failed: string[];
}

/** The path of the pinned Node 24 binary, installed into ~/.cache on first use. */
export async function node24(): Promise<string> {
  const { stdout } = await run("bash", [path.join(root, ".ci/node24")]);
  return stdout.trim();
}

/** Scenarios a revision requires (scored) and those it runs without scoring. */
export async function requirements(
  revision: Revision,
): Promise<{ required: string[]; notScored: string[] }> {
  const file = path.join(packageDir, "requirements", `${revision}.yaml`);
  const set = parse(await readFile(file, "utf8")) as {
    server: string[];
    not_scored?: { scenario: string; leg: string }[];
  };
  return {
    required: set.server,
    notScored: (set.not_scored ?? []).filter((e) => e.leg === "server").map((e) => e.scenario),
  };
}

/**
 * `conformance server --url <url> --requirements <revision>`; with `authorization`, every request
 * the CLI sends carries that Authorization header (the CLI has no option for it, see
 * conformance-authorization.mjs). Resolves with each scenario's result, whatever the exit code.
 */
export async function runServerLeg(
  node: string,
  url: string,
  revision: Revision,
  authorization?: string,
): Promise<Map<string, ScenarioResult>> {
  const output = await mkdtemp(path.join(tmpdir(), "mcpgw-conformance-"));
  const args = [
    ...(authorization === undefined ? [] : ["--import", AUTHORIZATION_HOOK]),
    CLI,
    ...["server", "--url", url, "--requirements", revision],
    ...["--timeout", "10000", "--output-dir", output],
  ];
  const env = { ...process.env, CONFORMANCE_AUTHORIZATION: authorization ?? "" };
  // Exit code 1 means some scenario failed; the per-scenario results below say which.
  await run(node, args, { env, maxBuffer: 64 * 1024 * 1024 }).catch((error: unknown) => {
    if ((error as { code?: unknown }).code !== 1) throw error;
  });
  const results = new Map<string, ScenarioResult>();
  for (const entry of await readdir(output)) {
    // One folder per scenario: server-<scenario>-<ISO timestamp with ':' and '.' as '-'>.
    const scenario = /^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/.exec(entry)?.[1];
    if (scenario === undefined) continue;
    const checks = JSON.parse(await readFile(path.join(output, entry, "checks.json"), "utf8")) as {
      id: string;
      status: string;
    }[];
    const failed = checks.filter((check) => check.status === "FAILURE").map((check) => check.id);
    results.set(scenario, { passed: failed.length === 0, failed });
  }
  return results;
}
