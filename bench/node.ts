/**
 * The Node.js binary that runs the measured processes (upstream, pass-throughs, mcpgw):
 * `BENCH_NODE`, or the Node running the harness. The load generator always runs on the
 * harness's own Node, so two runs that differ only in BENCH_NODE compare the servers alone.
 */
import { execFileSync } from "node:child_process";

export const BENCH_NODE = process.env.BENCH_NODE || process.execPath;

/** `v24.22.3`: the version of BENCH_NODE, read once. */
export const benchNodeVersion: string = execFileSync(BENCH_NODE, ["--version"], {
  encoding: "utf8",
}).trim();
