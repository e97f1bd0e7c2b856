import { mkdtemp, open, readFile, rename } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import { describe, expect, it, vi } from "vitest";
import type { AuditRecord } from "../../../src/audit/record.js";
import { AuditLog } from "../../../src/audit/writer.js";

const record = (n: number): AuditRecord => ({
  ts: new Date(0).toISOString(),
  session_id: null,
  method: "tools/list",
  request_id: n,
  gateway_request_id: `test-${n}`,
  action: "allow",
  auth_type: "api_key",
  auth_result: "ok",
  status: 200,
  latency_ms: 1,
  remote_addr: "127.0.0.1",
});

async function lines(file: string): Promise<AuditRecord[]> {
  return (await readFile(file, "utf8"))
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line));
}

describe("AuditLog", () => {
  it("writes whole lines in order, never interleaved, under concurrent writes", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "mcpgw-audit-"));
    const file = path.join(dir, "audit.jsonl");
    const audit = await AuditLog.open(file, { log: pino({ level: "silent" }) });
    for (let n = 0; n < 5_000; n++) audit.write(record(n));
    await audit.close();
    const written = await lines(file);
    expect(written.map((line) => line.request_id)).toEqual(
      Array.from({ length: 5_000 }, (_, n) => n),
    );
  });

  it("reopens its path after a rename (logrotate) and keeps every line", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "mcpgw-audit-"));
    const file = path.join(dir, "audit.jsonl");
    const audit = await AuditLog.open(file, { log: pino({ level: "silent" }) });
    audit.write(record(1));
    await audit.flush();
    await rename(file, `${file}.1`);
    audit.write(record(2));
    await audit.reopen();
    audit.write(record(3));
    await audit.close();
    expect((await lines(`${file}.1`)).map((line) => line.request_id)).toEqual([1, 2]);
    expect((await lines(file)).map((line) => line.request_id)).toEqual([3]);
  });

  it("keeps the lines of failed writes, reports unhealthy, and writes them once it can", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "mcpgw-audit-"));
    const file = path.join(dir, "audit.jsonl");
    const errors: NodeJS.ErrnoException[] = [];
    // Every write to /dev/full fails with ENOSPC, as on a full disk.
    const audit = await AuditLog.open("/dev/full", {
      log: pino({ level: "silent" }),
      retryDelayMs: 5,
      onWriteError: (error) => errors.push(error),
    });
    audit.write(record(1));
    audit.write(record(2));
    await vi.waitFor(() => expect(errors.length).toBeGreaterThanOrEqual(2));
    expect(errors[0]?.code).toBe("ENOSPC");
    expect(audit.healthy).toBe(false);
    audit.write(record(3));
    await audit.reopen(file);
    await audit.flush();
    expect(audit.healthy).toBe(true);
    await audit.close();
    expect((await lines(file)).map((line) => line.request_id)).toEqual([1, 2, 3]);
  });

  it("refuses to open a path it cannot write, and keeps its file when a reopen fails", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "mcpgw-audit-"));
    const file = path.join(dir, "audit.jsonl");
    await expect(
      AuditLog.open(path.join(dir, "missing", "audit.jsonl"), { log: pino({ level: "silent" }) }),
    ).rejects.toThrow(/ENOENT/);
    const audit = await AuditLog.open(file, { log: pino({ level: "silent" }) });
    await expect(audit.reopen(path.join(dir, "missing", "audit.jsonl"))).rejects.toThrow(/ENOENT/);
    audit.write(record(1));
    await audit.close();
    expect(audit.path).toBe(file);
    expect((await lines(file)).map((line) => line.request_id)).toEqual([1]);
  });

  it("under steady load writes a batch per interval, not one whenever the last write returns", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "mcpgw-audit-"));
    const file = path.join(dir, "audit.jsonl");
    const probe = await open(file, "a");
    const write = vi.spyOn(Object.getPrototypeOf(probe), "write");
    await probe.close();
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      const lineBytes = JSON.stringify(record(0)).length + 1;
      const audit = await AuditLog.open(file, {
        log: pino({ level: "silent" }),
        flushIntervalMs: 50,
        maxBatchBytes: 3 * lineBytes,
      });
      for (let n = 1; n <= 3; n++) audit.write(record(n)); // a full batch: written at once
      audit.write(record(4)); // queued while that write runs
      expect(write).toHaveBeenCalledTimes(1);
      await write.mock.results[0]?.value;
      await new Promise(setImmediate);
      // The line queued meanwhile waits for its interval instead of a write of its own.
      expect(write).toHaveBeenCalledTimes(1);
      expect((await lines(file)).map((line) => line.request_id)).toEqual([1, 2, 3]);
      expect(vi.getTimerCount()).toBe(1);
      vi.advanceTimersByTime(50);
      expect(write).toHaveBeenCalledTimes(2);
      await audit.close();
      expect((await lines(file)).map((line) => line.request_id)).toEqual([1, 2, 3, 4]);
    } finally {
      vi.useRealTimers();
      write.mockRestore();
    }
  });
});
