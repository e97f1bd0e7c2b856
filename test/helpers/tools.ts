/**
 * The test tools built from their Go modules by `test/tools/build.sh`: Jaeger v2 and
 * Prometheus. A test that needs one fails, saying how to build it, when it is missing.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";

const TOOLS = path.resolve(import.meta.dirname, "../tools");

export type Tool = "jaeger" | "prometheus";

/** The cached binary of `tool`, as build.sh names it (a digest of the pinned go.mod and go.sum). */
export function toolPath(tool: Tool): string {
  const pins = Buffer.concat([
    readFileSync(path.join(TOOLS, tool, "go.mod")),
    readFileSync(path.join(TOOLS, tool, "go.sum")),
  ]);
  const digest = createHash("sha256").update(pins).digest("hex").slice(0, 16);
  const cache = process.env.MCPGW_TOOLS_DIR ?? path.join(homedir(), ".cache", "mcpgw-tools");
  const binary = path.join(cache, `${tool}-${digest}`, tool);
  if (!existsSync(binary)) {
    throw new Error(
      `${tool} is not built for these pins (${binary} is missing): run \`bash test/tools/build.sh\` (needs Go 1.26+; npm test runs it first)`,
    );
  }
  return binary;
}
