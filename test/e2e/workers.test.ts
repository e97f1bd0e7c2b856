/**
 * `workers: 2` on the built binary: a primary and two worker processes sharing the port, as an
 * operator runs it: signals sent to the primary only (systemd's MAINPID), one audit file, one
 * /metrics for all, a killed worker replaced.
 */
import { readFile, rename } from "node:fs/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { keys, killDaemons, startDaemon } from "../helpers/daemon.js";
import type { LogLine } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { INITIALIZE, POST_HEADERS } from "../helpers/mcp-client.js";

const KEY_A = "workers-key-alpha-0123456789";
const KEY_B = "workers-key-bravo-0123456789";

let upstream: ExampleServer;
let hashA: string;
let hashB: string;

beforeAll(async () => {
  upstream = await startExampleServer();
  [hashA, hashB] = await Promise.all([cheapHash(KEY_A), cheapHash(KEY_B)]);
});

afterEach(killDaemons);

afterAll(async () => {
  await upstream.close();
});

/** One request on a connection of its own, so that the primary hands each to the next worker. */
async function statusOf(url: string, key: string): Promise<number> {
  const res = await fetch(url, {
    method: "POST",
    headers: { ...POST_HEADERS, authorization: `Bearer ${key}`, connection: "close" },
    body: INITIALIZE,
  });
  await res.arrayBuffer();
  return res.status;
}

async function statuses(url: string, key: string, count: number): Promise<number[]> {
  return Promise.all(Array.from({ length: count }, () => statusOf(url, key)));
}

/** The merged exposition's value of one series. */
function sample(exposition: string, series: string): number {
  const line = exposition.split("\n").find((candidate) => candidate.startsWith(`${series} `));
  if (line === undefined) throw new Error(`no ${series} in:\n${exposition}`);
  return Number(line.slice(series.length + 1));
}

const workerLines = (logs: LogLine[], msg: string) =>
  logs.filter((line) => line.msg === msg && typeof line.worker === "number");

describe("workers: 2", () => {
  it("serves from two worker processes under one primary, with one audit file and one /metrics", async () => {
    const daemon = await startDaemon(upstreamUrl(), { workers: 2, ...keys(["alpha", hashA]) });
    const listening = daemon.bin.logs.find((line) => line.msg === "listening");
    expect(listening).toMatchObject({ workers: 2, pid: daemon.bin.child.pid });
    expect(listening?.worker).toBeUndefined();
    const started = workerLines(daemon.bin.logs, "worker listening");
    expect(new Set(started.map((line) => line.pid)).size).toBe(2);
    expect(started.map((line) => line.worker).sort()).toEqual([1, 2]);

    const results = await statuses(daemon.url, KEY_A, 200);
    expect(results.every((status) => status === 200)).toBe(true);

    const metrics = await (await fetch(new URL("/metrics", daemon.url))).text();
    expect(sample(metrics, "mcpgw_workers")).toBe(2);
    // Both workers served: each verified the key with argon2 once, never again.
    expect(sample(metrics, "mcpgw_argon2_runs_total")).toBe(2);
    expect(
      sample(
        metrics,
        'mcpgw_requests_total{route="/mcp",method="initialize",auth_type="api_key",auth_result="ok",status="200"}',
      ),
    ).toBe(200);

    // Every request's line, each whole, in the one file both workers append to.
    await expect
      .poll(async () => (await daemon.auditLines()).length, { timeout: 5_000, interval: 50 })
      .toBe(200);
    const lines = (await readFile(daemon.audit, "utf8")).split("\n").filter(Boolean);
    for (const line of lines) expect(() => JSON.parse(line)).not.toThrow();
  });

  it("reloads every worker on the primary's SIGHUP and logs one outcome; a broken file changes nothing", async () => {
    const daemon = await startDaemon(upstreamUrl(), { workers: 2, ...keys(["alpha", hashA]) });
    await daemon.write({ workers: 2, ...keys(["bravo", hashB]) });
    daemon.bin.child.kill("SIGHUP");
    const reloaded = await daemon.bin.waitForLog((line) => line.msg === "config reloaded");
    expect(reloaded).toMatchObject({ workers: 2, generation: 2, trigger: "SIGHUP" });
    expect(reloaded.worker).toBeUndefined();
    // Whichever worker a connection lands on, it has the new keys.
    expect(new Set(await statuses(daemon.url, KEY_B, 20))).toEqual(new Set([200]));
    expect(new Set(await statuses(daemon.url, KEY_A, 20))).toEqual(new Set([401]));
    expect(daemon.bin.logs.filter((line) => line.msg === "config reloaded")).toHaveLength(1);

    await daemon.write({ workers: 2, auth: { keys: [] } });
    daemon.bin.child.kill("SIGHUP");
    const failed = await daemon.bin.waitForLog((line) =>
      line.msg.startsWith("config reload failed"),
    );
    expect(failed).toMatchObject({ level: "error", workers: 2, failed_workers: 2 });
    expect(new Set(await statuses(daemon.url, KEY_B, 20))).toEqual(new Set([200]));
  });

  it("replaces a worker that dies, and goes on serving", async () => {
    const daemon = await startDaemon(upstreamUrl(), { workers: 2, ...keys(["alpha", hashA]) });
    const victim = workerLines(daemon.bin.logs, "worker listening")[0] as LogLine;
    process.kill(victim.pid as number, "SIGKILL");
    const exited = await daemon.bin.waitForLog((line) => / exited; /.test(line.msg));
    expect(exited.msg).toMatch(/^worker \d exited; starting another/);
    expect(exited).toMatchObject({ level: "error", signal: "SIGKILL" });
    await daemon.bin.waitForLog((line) => line.msg === "worker replaced", 15_000);
    expect(workerLines(daemon.bin.logs, "worker listening")).toHaveLength(3);
    expect(new Set(await statuses(daemon.url, KEY_A, 20))).toEqual(new Set([200]));
  });

  it("reopens the audit file in every worker on SIGUSR1 (logrotate), losing no line", async () => {
    const daemon = await startDaemon(upstreamUrl(), { workers: 2, ...keys(["alpha", hashA]) });
    await statuses(daemon.url, KEY_A, 50);
    await expect
      .poll(async () => (await daemon.auditLines()).length, { timeout: 5_000, interval: 50 })
      .toBe(50);
    await rename(daemon.audit, `${daemon.audit}.1`);
    daemon.bin.child.kill("SIGUSR1");
    await daemon.bin.waitForLog(
      (line) => line.msg === "audit file reopened" && line.worker === undefined,
    );
    // Each worker's own reopen is done before its next line is written there.
    await expect.poll(() => workerLines(daemon.bin.logs, "audit file reopened").length).toBe(2);
    await statuses(daemon.url, KEY_A, 50);
    await expect
      .poll(async () => (await daemon.auditLines()).length, { timeout: 5_000, interval: 50 })
      .toBe(50);
    const rotated = (await readFile(`${daemon.audit}.1`, "utf8")).split("\n").filter(Boolean);
    expect(rotated).toHaveLength(50);
  });

  it("drains every worker on SIGTERM and exits 0, the primary's line last", async () => {
    const daemon = await startDaemon(upstreamUrl(), { workers: 2, ...keys(["alpha", hashA]) });
    await statuses(daemon.url, KEY_A, 10);
    daemon.bin.child.kill("SIGTERM");
    expect(await daemon.bin.exited).toBe(0);
    expect(workerLines(daemon.bin.logs, "stopped")).toHaveLength(2);
    expect(daemon.bin.logs.at(-1)).toMatchObject({ msg: "stopped" });
    expect(daemon.bin.logs.at(-1)?.worker).toBeUndefined();
    expect((await daemon.auditLines()).length).toBe(10);
  });
});

function upstreamUrl(): string {
  return upstream.url;
}
