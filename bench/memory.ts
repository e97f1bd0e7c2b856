/**
 * Resident memory of another process and its children (the worker processes of `workers: N`),
 * from Linux's /proc/<pid>/status. Linux only.
 */
import { readFileSync } from "node:fs";
import { childPids } from "./cpu.js";

/** VmRSS of `pid` in bytes: the pages of the process in RAM, shared libraries included. */
export function readRssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** `readRssBytes` of `pid` and of its living children, summed. */
export function readTreeRssBytes(pid: number): number {
  let bytes = readRssBytes(pid);
  for (const child of childPids(pid)) {
    try {
      bytes += readRssBytes(child);
    } catch {
      // exited between the two reads
    }
  }
  return bytes;
}
