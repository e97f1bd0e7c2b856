/**
 * What an operator meets installing and running the built binary: the bin itself, the demo
 * key, check-config against run, restart tracking, readiness, the ConfigMap watch, signals and
 * request ids.
 */
import { execFile } from "node:child_process";
import {
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rename,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { parse, stringify } from "yaml";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { DEMO_API_KEY } from "../../src/auth/demo-key.js";
import { BIN, type RunningBin, runBin, spawnBin } from "../helpers/bin.js";
import { keys, killDaemons, startDaemon as startDaemonOn, track } from "../helpers/daemon.js";
import { cheapHash } from "../helpers/keys.js";
import { initializeStatus, POST_HEADERS, TOOLS_LIST } from "../helpers/mcp-client.js";

const execFileAsync = promisify(execFile);
const KEY = "operator-key-0123456789";

let upstream: ExampleServer;
let hash: string;
let dir: string;

beforeAll(async () => {
  upstream = await startExampleServer();
  hash = await cheapHash(KEY);
  dir = await mkdtemp(path.join(tmpdir(), "mcpgw-operator-"));
});

afterEach(killDaemons);

afterAll(async () => {
  await upstream.close();
});

const startDaemon = (config: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) =>
  startDaemonOn(upstream.url, config, env);

/** Writes a config file into the test's temp dir. */
async function configFile(name: string, config: Record<string, unknown>): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(
    file,
    stringify({ listen: "127.0.0.1:0", upstream: { url: upstream.url }, ...config }),
  );
  return file;
}

/** Waits until `count` log lines match (a line seen before counts too). */
function waitForLogs(
  bin: RunningBin,
  predicate: (line: { msg: string }) => boolean,
  count: number,
) {
  return vi.waitFor(
    () => {
      const found = bin.logs.filter(predicate);
      if (found.length < count) throw new Error(`${found.length} of ${count} matching log lines`);
      return found;
    },
    { timeout: 10_000, interval: 20 },
  );
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(new URL("/metrics", url))).text();
  const line = text.split("\n").find((candidate) => candidate.startsWith(`${name} `));
  return Number(line?.split(" ")[1]);
}

const DEMO_HASH = (
  parse(await readFile(path.resolve("examples/demo.yaml"), "utf8")) as {
    auth: { keys: { hash: string }[] };
  }
).auth.keys[0]?.hash as string;

describe("the installed binary", () => {
  it("is executable after the build, run directly and through the documented symlink", async () => {
    expect((await stat(BIN)).mode & 0o111).toBe(0o111);
    const direct = await execFileAsync(BIN, ["--version"]);
    expect(direct.stdout).toMatch(/^mcpgw \d+\.\d+\.\d+/);
    const link = path.join(dir, "mcpgw");
    await symlink(BIN, link);
    const linked = await execFileAsync(link, ["--version"]);
    expect(linked.stdout).toBe(direct.stdout);
  });
});

describe("the published demo key", () => {
  it("is refused with exit 78 and how to make a real key, however it was hashed", async () => {
    const rehashed = await cheapHash(DEMO_API_KEY);
    const file = await configFile("demo-key.yaml", {
      auth: {
        keys: [
          { id: "demo", hash: DEMO_HASH },
          { id: "mine", hash },
          { id: "copied", hash: rehashed },
        ],
      },
      audit: { path: "audit.jsonl" },
    });
    const checked = await runBin(["check-config", "--config", file]);
    expect(checked.code).toBe(78);
    const problems = checked.stderr.trim().split("\n");
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(
      new RegExp(
        `^${escapeRegExp(file)}:\\d+:\\d+ auth\\.keys\\[0\\]\\.hash: key "demo" accepts the published demo key`,
      ),
    );
    expect(problems[0]).toContain("mcpgw gen-key --id demo");
    expect(problems[1]).toContain('auth.keys[2].hash: key "copied" accepts the published demo key');

    const run = track(spawnBin(["run", "--config", file]));
    expect(await run.exited).toBe(78);
    expect(run.logs.find((line) => line.level === "fatal")?.msg).toContain("published demo key");
  });

  it("stops a copy of the shipped example, and serves npm start's demo config", async () => {
    const example = await runBin(["check-config", "--config", path.resolve("mcpgw.example.yaml")]);
    expect(example.code).toBe(78);
    expect(example.stderr).toContain('key "demo" accepts the published demo key');
    const demo = await runBin(["check-config", "--config", path.resolve("examples/demo.yaml")]);
    expect(demo).toMatchObject({ code: 0 });
  });

  it("is accepted, with a warning, where the config says it is a demo", async () => {
    const daemon = await startDaemon({
      auth: { allow_demo_key: true, keys: [{ id: "demo", hash: DEMO_HASH }] },
    });
    expect(daemon.bin.logs.some((line) => line.msg.includes("auth.allow_demo_key is true"))).toBe(
      true,
    );
    expect(await initializeStatus(daemon.url, DEMO_API_KEY)).toBe(200);
  });
});

describe("check-config runs the checks run does", () => {
  it("refuses an audit.path in a missing directory, as run does, naming file, line and key", async () => {
    const file = await configFile("no-dir.yaml", {
      ...keys(["alpha", hash]),
      audit: { path: "/nonexistent/dir/audit.jsonl" },
    });
    const expected = new RegExp(
      `^${escapeRegExp(file)}:\\d+:\\d+ audit\\.path: cannot create /nonexistent/dir/audit\\.jsonl: directory /nonexistent/dir does not exist`,
    );
    const checked = await runBin(["check-config", "--config", file]);
    expect(checked.code).toBe(78);
    expect(checked.stderr.trim()).toMatch(expected);
    const run = track(spawnBin(["run", "--config", file]));
    expect(await run.exited).toBe(78);
    expect(run.logs.find((line) => line.level === "fatal")?.msg).toMatch(
      /audit\.path: cannot create \/nonexistent\/dir\/audit\.jsonl/,
    );
  });

  it("refuses a relative audit.path through a file, and creates no file when the path is good", async () => {
    const sub = await mkdtemp(path.join(dir, "rel-"));
    await writeFile(path.join(sub, "logs"), "a file, not a directory");
    const file = path.join(sub, "mcpgw.yaml");
    const withAuditPath = (auditPath: string) =>
      writeFile(
        file,
        stringify({
          upstream: { url: upstream.url },
          ...keys(["alpha", hash]),
          audit: { path: auditPath },
        }),
      );
    await withAuditPath("logs/audit.jsonl");
    const checked = await runBin(["check-config", "--config", file]);
    expect(checked.code).toBe(78);
    expect(checked.stderr).toContain(
      `audit.path: cannot open ${path.join(sub, "logs/audit.jsonl")} for appending: a part of the path is not a directory`,
    );

    await withAuditPath("audit.jsonl");
    expect((await runBin(["check-config", "--config", file])).code).toBe(0);
    expect(await readdir(sub)).not.toContain("audit.jsonl");
  });
});

describe("reload", () => {
  it("tracks restart-only settings against the running ones, in the log and a metric", async () => {
    const base = keys(["alpha", hash]);
    const daemon = await startDaemon(base);
    const required = (line: { msg: string }) => line.msg === "restart required for: listen";
    const reloaded = (line: { msg: string }) =>
      line.msg === "config reloaded" || line.msg === "config unchanged";
    expect(await metric(daemon.url, "mcpgw_config_restart_pending")).toBe(0);

    await daemon.write({ ...base, listen: "127.0.0.1:1" });
    daemon.bin.child.kill("SIGHUP");
    await waitForLogs(daemon.bin, required, 1);
    expect(await metric(daemon.url, "mcpgw_config_restart_pending")).toBe(1);

    // Reverted: the file matches the running socket again.
    await daemon.write(base);
    daemon.bin.child.kill("SIGHUP");
    await waitForLogs(daemon.bin, (line) => line.msg.startsWith("restart no longer required"), 1);
    expect(daemon.bin.logs.filter(required)).toHaveLength(1);
    expect(await metric(daemon.url, "mcpgw_config_restart_pending")).toBe(0);

    // Changed again, then a reload of another key only: still pending, and said again.
    await daemon.write({ ...base, listen: "127.0.0.1:1" });
    daemon.bin.child.kill("SIGHUP");
    await waitForLogs(daemon.bin, required, 2);
    await daemon.write({ ...base, listen: "127.0.0.1:1", log: { level: "debug" } });
    daemon.bin.child.kill("SIGHUP");
    await waitForLogs(daemon.bin, reloaded, 4);
    await waitForLogs(daemon.bin, required, 3);
    expect(await metric(daemon.url, "mcpgw_config_restart_pending")).toBe(1);

    // metrics are restart-only too.
    await daemon.write({ ...base, metrics: { enabled: false } });
    daemon.bin.child.kill("SIGHUP");
    await waitForLogs(daemon.bin, (line) => line.msg === "restart required for: metrics", 1);
  });

  it("names the file, line and key when the new audit.path cannot be opened, and keeps serving", async () => {
    const daemon = await startDaemon(keys(["alpha", hash]));
    await daemon.write({ ...keys(["alpha", hash]), audit: { path: "missing/audit.jsonl" } });
    daemon.bin.child.kill("SIGHUP");
    const [failed] = await waitForLogs(
      daemon.bin,
      (line) => line.msg.startsWith("config reload failed"),
      1,
    );
    expect(failed?.msg).toMatch(
      new RegExp(
        `^config reload failed: ${escapeRegExp(daemon.file)}:\\d+:\\d+ audit\\.path: cannot create `,
      ),
    );
    expect(await initializeStatus(daemon.url, KEY)).toBe(200);
  });

  it("follows a Kubernetes ConfigMap update: a ..data symlink swapped with mv -T", async () => {
    const volume = await mkdtemp(path.join(tmpdir(), "mcpgw-configmap-"));
    const watched = { reload: { watch: true, debounce: "50ms" } };
    const render = (config: Record<string, unknown>) =>
      stringify({
        listen: "127.0.0.1:0",
        upstream: { url: upstream.url },
        audit: { path: path.join(volume, "..", `${path.basename(volume)}-audit.jsonl`) },
        ...watched,
        ...config,
      });
    // The layout kubelet writes: mcpgw.yaml -> ..data/mcpgw.yaml, ..data -> ..<timestamp>.
    await mkdir(path.join(volume, "..2026_12_04_00_00_00.1"));
    await writeFile(
      path.join(volume, "..2026_12_04_00_00_00.1", "mcpgw.yaml"),
      render(keys(["alpha", hash])),
    );
    await symlink("..2026_12_04_00_00_00.1", path.join(volume, "..data"));
    await symlink("..data/mcpgw.yaml", path.join(volume, "mcpgw.yaml"));
    const bin = track(spawnBin(["run", "--config", path.join(volume, "mcpgw.yaml")]));
    const listening = await bin.waitForLog((line) => line.msg === "listening");
    await bin.waitForLog((line) => line.msg === "watching config file");
    const other = "configmap-key-0123456789";

    // The update: a new timestamped directory, a new ..data_tmp link renamed over ..data.
    await mkdir(path.join(volume, "..2026_12_04_00_01_00.2"));
    await writeFile(
      path.join(volume, "..2026_12_04_00_01_00.2", "mcpgw.yaml"),
      render(keys(["alpha", hash], ["bravo", await cheapHash(other)])),
    );
    await symlink("..2026_12_04_00_01_00.2", path.join(volume, "..data_tmp"));
    await rename(path.join(volume, "..data_tmp"), path.join(volume, "..data"));
    expect(await readlink(path.join(volume, "..data"))).toBe("..2026_12_04_00_01_00.2");

    const reloaded = await bin.waitForLog(
      (line) => line.msg === "config reloaded" && line.trigger === "file change",
    );
    expect(reloaded.changed).toEqual(["auth.keys"]);
    expect(await initializeStatus(listening.url as string, other)).toBe(200);
  });
});

describe("reload.watch with a symlinked config", () => {
  it("reloads when the file a symlink points at, in another directory, is edited", async () => {
    const real = await mkdtemp(path.join(tmpdir(), "mcpgw-real-"));
    const linked = await mkdtemp(path.join(tmpdir(), "mcpgw-link-"));
    const render = (config: Record<string, unknown>) =>
      stringify({
        listen: "127.0.0.1:0",
        upstream: { url: upstream.url },
        audit: { path: path.join(real, "audit.jsonl") },
        reload: { watch: true, debounce: "50ms" },
        ...config,
      });
    await writeFile(path.join(real, "mcpgw.yaml"), render(keys(["alpha", hash])));
    await symlink(path.join(real, "mcpgw.yaml"), path.join(linked, "mcpgw.yaml"));
    const bin = track(spawnBin(["run", "--config", path.join(linked, "mcpgw.yaml")]));
    await bin.waitForLog((line) => line.msg === "watching config file");
    await writeFile(
      path.join(real, "mcpgw.yaml"),
      render({ ...keys(["alpha", hash]), log: { level: "debug" } }),
    );
    const reloaded = await bin.waitForLog(
      (line) => line.msg === "config reloaded" && line.trigger === "file change",
    );
    expect(reloaded.changed).toEqual(["log.level"]);
  });
});

describe("audit under on_error: fail_closed", () => {
  it("turns /readyz 503 with the reason, says why requests are refused, and counts what was lost at shutdown", async () => {
    // Every write to /dev/full fails with ENOSPC, as on a full disk.
    const daemon = await startDaemon({
      ...keys(["alpha", hash]),
      audit: { path: "/dev/full", on_error: "fail_closed" },
    });
    const ready = await fetch(new URL("/readyz", daemon.url));
    expect(ready.status).toBe(200);
    await ready.text();
    expect(await initializeStatus(daemon.url, KEY)).toBe(200);
    // The first audit write fails: from then on the gateway takes no traffic.
    const notReady = await vi.waitFor(
      async () => {
        const res = await fetch(new URL("/readyz", daemon.url));
        const body = await res.json();
        if (res.status !== 503) throw new Error(`readyz ${res.status}`);
        return body;
      },
      { timeout: 5_000, interval: 20 },
    );
    expect(notReady).toEqual({ status: "not_ready", reason: "audit_unavailable" });
    expect(await initializeStatus(daemon.url, KEY)).toBe(503);
    const [refused] = await waitForLogs(
      daemon.bin,
      (line) => line.msg.startsWith("the audit log cannot be written"),
      1,
    );
    expect(refused).toMatchObject({
      code: "audit_unavailable",
      cause: expect.stringContaining("/dev/full: ENOSPC"),
      gateway_request_id: expect.any(String),
    });

    daemon.bin.child.kill("SIGTERM");
    expect(await daemon.bin.exited).toBe(0);
    const lost = daemon.bin.logs.find((line) => / audit records not written$/.test(line.msg));
    expect(lost).toMatchObject({
      msg: "2 audit records not written",
      unwritten: 2,
      level: "error",
    });
    expect(lost?.cause).toContain("ENOSPC");
    expect(daemon.bin.logs.at(-1)?.msg).toBe("stopped");
  });
});

describe("signals", () => {
  it("SIGUSR1 opens no inspector port; it reopens the audit file", async () => {
    const daemon = await startDaemon(keys(["alpha", hash]));
    const pid = daemon.bin.child.pid as number;
    daemon.bin.child.kill("SIGUSR1");
    await daemon.bin.waitForLog((line) => line.msg === "audit file reopened");
    expect(daemon.bin.stderr()).not.toContain("Debugger listening");
    expect(await listeningPorts(pid)).not.toContain(9229);
    // The process still serves.
    expect(await initializeStatus(daemon.url, KEY)).toBe(200);
  });
});

describe("request ids", () => {
  it("one gateway request id in the log line, the audit line and beside the JSON-RPC id", async () => {
    const daemon = await startDaemonOn("http://127.0.0.1:9/mcp", keys(["alpha", hash]));
    const res = await fetch(daemon.url, {
      method: "POST",
      headers: { ...POST_HEADERS, authorization: `Bearer ${KEY}` },
      body: TOOLS_LIST,
    });
    expect(res.status).toBe(502);
    await res.text();
    const [warning] = await waitForLogs(
      daemon.bin,
      (line) => (line as { code?: string }).code === "upstream_unreachable",
      1,
    );
    daemon.bin.child.kill("SIGTERM");
    expect(await daemon.bin.exited).toBe(0);
    const [line] = await daemon.auditLines();
    expect(line?.gateway_request_id).toMatch(/^[\w-]{8}-[0-9a-z]+$/);
    expect(warning).toMatchObject({ gateway_request_id: line?.gateway_request_id, request_id: 7 });
    expect(line?.request_id).toBe(7);
  });
});

describe("command line polish", () => {
  it("names an unexpected argument, and refuses a gen-key id the config would refuse", async () => {
    const extra = await runBin(["run", "extra"]);
    expect(extra.code).toBe(64);
    expect(extra.stderr).toContain('unexpected argument "extra" after "run"');
    const badId = await runBin(["gen-key", "--id", "my key"]);
    expect(badId.code).toBe(64);
    expect(badId.stderr).toContain("1-64 characters");
  });

  it("gen-key prints an entry that pastes under auth.keys: as it is", async () => {
    const { code, stdout } = await runBin(["gen-key", "--id", "ci-bot"]);
    expect(code).toBe(0);
    const entry = stdout
      .split("\n")
      .filter((line) => !line.startsWith("#"))
      .join("\n");
    const file = path.join(dir, "pasted.yaml");
    await writeFile(
      file,
      `upstream:\n  url: ${upstream.url}\naudit:\n  path: audit.jsonl\nauth:\n  keys:\n${entry}`,
    );
    expect(await runBin(["check-config", "--config", file])).toMatchObject({ code: 0 });
  });

  it("logs the version, Node and config path when listening; health probes /readyz", async () => {
    const daemon = await startDaemon(keys(["alpha", hash]));
    const listening = daemon.bin.logs.find((line) => line.msg === "listening");
    expect(listening).toMatchObject({
      version: expect.stringMatching(/^\d+\.\d+\.\d+/),
      node: process.version,
      config: daemon.file,
    });
    const healthy = await runBin(["health", "--url", new URL("/readyz", daemon.url).href]);
    expect(healthy.code).toBe(0);
    expect(healthy.stdout).toContain('200 {"status":"ready"}');
    const down = await runBin(["health", "--url", "http://127.0.0.1:9/readyz"]);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain("http://127.0.0.1:9/readyz");
  });
});

/** TCP ports process `pid` listens on, from its socket descriptors and /proc/net/tcp{,6}. */
async function listeningPorts(pid: number): Promise<number[]> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
    const match = /^socket:\[(\d+)\]$/.exec(target);
    if (match?.[1]) inodes.add(match[1]);
  }
  const ports: number[] = [];
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const row of (await readFile(table, "utf8")).split("\n").slice(1)) {
      const fields = row.trim().split(/\s+/);
      // local_address is field 1 (ADDR:PORT in hex), st field 3 (0A = LISTEN), inode field 9.
      if (fields[3] === "0A" && inodes.has(fields[9] ?? "")) {
        ports.push(Number.parseInt(fields[1]?.split(":").at(-1) ?? "", 16));
      }
    }
  }
  return ports;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
