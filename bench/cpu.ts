/**
 * CPU time of another process, from Linux's /proc/<pid>/stat. On a small shared machine the
 * load generator and the server compete for the same cores, so requests per second move with
 * whatever else runs; the CPU a server spends per request barely does, which is why it is the
 * number the benchmark compares. Linux only.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** USER_HZ, the unit of utime and stime in /proc/<pid>/stat (proc(5)); 100 almost everywhere. */
export function clockTicksPerSecond(): number {
  const output = execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim();
  const ticks = Number(output);
  if (!Number.isInteger(ticks) || ticks <= 0) {
    throw new Error(`getconf CLK_TCK printed ${JSON.stringify(output)}, not a tick rate`);
  }
  return ticks;
}

/**
 * User plus system CPU time of all the threads of `pid` (worker threads and libuv's pool
 * included, which is where argon2 and file writes run), in clock ticks.
 */
export function readCpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) is in parentheses and may itself hold spaces or ")", so the
  // numeric fields are counted from the last ")": field 3 (state) comes first after it.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[14 - 3]);
  const stime = Number(fields[15 - 3]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) {
    throw new Error(`cannot read utime/stime from /proc/${pid}/stat: ${stat}`);
  }
  return utime + stime;
}
