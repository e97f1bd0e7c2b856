/**
 * CPU time of another process, from Linux's /proc/<pid>/stat. On a small shared machine the
 * load generator and the server compete for the same cores, so requests per second move with
 * whatever else runs; the CPU a server spends per request barely does, which is why it is the
 * number the benchmark compares. Linux only.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

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

/**
 * `readCpuTicks` of `pid` and of its living children (the worker processes of `workers: N`),
 * so a target of several processes is charged all their CPU. A child that exited in between is
 * not counted; the targets' children live as long as the target.
 */
export function readTreeCpuTicks(pid: number): number {
  let ticks = readCpuTicks(pid);
  for (const child of childPids(pid)) {
    try {
      ticks += readCpuTicks(child);
    } catch {
      // exited between the two reads
    }
  }
  return ticks;
}

/** The pids of the living children of `pid`, from every process's /proc/<pid>/stat. */
export function childPids(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // gone since the listing
    }
    // Field 4, the parent's pid, is the second after the command name's ")".
    const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (parent === pid) children.push(Number(entry));
  }
  return children;
}
