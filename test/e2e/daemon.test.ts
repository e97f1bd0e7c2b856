import { once } from "node:events";
import { mkdtemp, readFile, rename, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { spawnBin } from "../helpers/bin.js";
import { keys, killDaemons, startDaemon as startDaemonOn, track } from "../helpers/daemon.js";
import { cheapHash } from "../helpers/keys.js";
import {
  connectClient,
  INITIALIZE,
  initializeStatus,
  POST_HEADERS,
  textOf,
} from "../helpers/mcp-client.js";
import { startOtlpReceiver } from "../helpers/otlp-receiver.js";

const KEY_A = "e2e-key-alpha-0123456789";
const KEY_B = "e2e-key-bravo-0123456789";

let upstream: ExampleServer;
let hashA: string;
let hashB: string;

beforeAll(async () => {
  upstream = await startExampleServer();
  [hashA, hashB] = await Promise.all([cheapHash(KEY_A), cheapHash(KEY_B)]);
});

afterEach(killDaemons);

const startDaemon = (config: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) =>
  startDaemonOn(upstream.url, config, env);

afterAll(async () => {
  await upstream.close();
});

describe("mcpgw run (the built binary)", () => {
  it("SIGHUP swaps in added and removed keys, and logs what changed", async () => {
    const daemon = await startDaemon(keys(["alpha", hashA]));
    expect(await initializeStatus(daemon.url, KEY_A)).toBe(200);
    expect(await initializeStatus(daemon.url, KEY_B)).toBe(401);

    await daemon.write(keys(["bravo", hashB]));
    daemon.bin.child.kill("SIGHUP");
    const reloaded = await daemon.bin.waitForLog((line) => line.msg === "config reloaded");
    expect(reloaded.changed).toEqual(["auth.keys[0].id", "auth.keys[0].hash"]);
    expect(reloaded.generation).toBe(2);
    expect(await initializeStatus(daemon.url, KEY_B)).toBe(200);
    expect(await initializeStatus(daemon.url, KEY_A)).toBe(401);
    expect(JSON.stringify(daemon.bin.logs)).not.toContain(KEY_A);
  });

  it("keeps serving the last good config when the new file is broken", async () => {
    const daemon = await startDaemon(keys(["alpha", hashA]));
    await writeFile(daemon.file, "listen: [\n");
    daemon.bin.child.kill("SIGHUP");
    const failed = await daemon.bin.waitForLog((line) =>
      line.msg.startsWith("config reload failed"),
    );
    expect(failed.msg).toContain(`${daemon.file}:`);
    expect(failed.level).toBe("error");
    expect(await initializeStatus(daemon.url, KEY_A)).toBe(200);

    // A file that parses but fails validation is refused the same way.
    await daemon.write({ auth: { keys: [] } });
    daemon.bin.child.kill("SIGHUP");
    await daemon.bin.waitForLog((line) =>
      line.msg.includes("auth.keys: auth is enabled but neither API keys nor auth.oauth"),
    );
    expect(await initializeStatus(daemon.url, KEY_A)).toBe(200);
  });

  it("applies the rest of a reload that changes listen, and says a restart is needed", async () => {
    const daemon = await startDaemon(keys(["alpha", hashA]));
    await daemon.write({
      ...keys(["alpha", hashA]),
      listen: "127.0.0.1:1",
      log: { level: "warn" },
    });
    daemon.bin.child.kill("SIGHUP");
    const warning = await daemon.bin.waitForLog((line) =>
      line.msg.startsWith("restart required for:"),
    );
    expect(warning.msg).toBe("restart required for: listen");
    expect(await initializeStatus(daemon.url, KEY_A)).toBe(200);
  });

  it("reloads on file change when reload.watch is true", async () => {
    const watched = { reload: { watch: true, debounce: "50ms" } };
    const daemon = await startDaemon({ ...keys(["alpha", hashA]), ...watched });
    await daemon.bin.waitForLog((line) => line.msg === "watching config file");
    await daemon.write({ ...keys(["alpha", hashA], ["bravo", hashB]), ...watched });
    await daemon.bin.waitForLog(
      (line) => line.msg === "config reloaded" && line.trigger === "file change",
    );
    expect(await initializeStatus(daemon.url, KEY_B)).toBe(200);
  });

  it("reopens the audit file on SIGHUP, as logrotate needs", async () => {
    const daemon = await startDaemon(keys(["alpha", hashA]));
    expect(await initializeStatus(daemon.url, KEY_A)).toBe(200);
    await rename(daemon.audit, `${daemon.audit}.1`);
    daemon.bin.child.kill("SIGHUP");
    await daemon.bin.waitForLog((line) => line.msg === "config unchanged");
    expect(await initializeStatus(daemon.url, KEY_A)).toBe(200);
    daemon.bin.child.kill("SIGTERM");
    expect(await daemon.bin.exited).toBe(0);
    expect((await daemon.auditLines()).length).toBe(1);
    expect((await readFile(`${daemon.audit}.1`, "utf8")).trim().split("\n")).toHaveLength(1);
  });

  it("drains in-flight requests on SIGTERM, refuses new connections, exits 0 with the audit complete", async () => {
    const daemon = await startDaemon(keys(["alpha", hashA]));
    const { client } = await connectClient(daemon.url, { authorization: `Bearer ${KEY_A}` });
    let progressed: () => void = () => {};
    const firstProgress = new Promise<void>((resolve) => {
      progressed = resolve;
    });
    const call = client.callTool(
      { name: "countdown", arguments: { steps: 4, interval_ms: 150 } },
      undefined,
      {
        onprogress: () => progressed(),
      },
    );
    await firstProgress;
    daemon.bin.child.kill("SIGTERM");
    await daemon.bin.waitForLog((line) => line.msg === "shutting down");
    expect(textOf(await call)).toBe("done");
    expect(await daemon.bin.exited).toBe(0);
    await expect(fetch(daemon.url)).rejects.toThrow();
    const lines = await daemon.auditLines();
    const countdown = lines.find((line) => line.tool === "countdown");
    expect(countdown).toMatchObject({ status: 200, action: "allow" });
    // initialize, notifications/initialized, the standalone GET stream, and the call.
    expect(lines.map((line) => line.method)).toEqual(
      expect.arrayContaining(["initialize", "notifications/initialized", "tools/call"]),
    );
    // The standalone GET stream never ends by itself: shutdown closes it instead of waiting.
    expect(lines.find((line) => line.method === "GET")).toMatchObject({ error: "shutting_down" });
    expect(daemon.bin.logs.at(-1)?.msg).toBe("stopped");
  });

  it("exports the spans it still holds on SIGTERM before exiting", async () => {
    const receiver = await startOtlpReceiver();
    // A batch would otherwise wait a minute: only the shutdown flush can deliver it in time.
    const daemon = await startDaemon(
      { ...keys(["alpha", hashA]), telemetry: { enabled: true, otlp_endpoint: receiver.url } },
      { OTEL_BSP_SCHEDULE_DELAY: "60000" },
    );
    const res = await fetch(daemon.url, {
      method: "POST",
      headers: { ...POST_HEADERS, authorization: `Bearer ${KEY_A}` },
      body: INITIALIZE,
    });
    expect(res.status).toBe(200);
    await res.text();
    expect(receiver.spans).toHaveLength(0);
    daemon.bin.child.kill("SIGTERM");
    expect(await daemon.bin.exited).toBe(0);
    const [line] = await daemon.auditLines();
    expect(receiver.spans.map((span) => [span.kind, span.traceId])).toEqual(
      expect.arrayContaining([
        [2, line?.trace_id],
        [3, line?.trace_id],
      ]),
    );
    await receiver.close();
  });

  it("exits 78 on a bad config and 1 when the port is taken", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "mcpgw-e2e-"));
    const bad = path.join(dir, "bad.yaml");
    await writeFile(bad, "upstream: {url: nope}\naudit: {path: a.jsonl}\n");
    const badRun = track(spawnBin(["run", "--config", bad]));
    expect(await badRun.exited).toBe(78);
    expect(
      badRun.logs.some((line) => line.level === "fatal" && line.msg.includes("upstream.url")),
    ).toBe(true);

    const blocker = createServer();
    blocker.listen(0, "127.0.0.1");
    await once(blocker, "listening");
    const port = (blocker.address() as { port: number }).port;
    const busy = path.join(dir, "busy.yaml");
    await writeFile(
      busy,
      stringify({
        listen: `127.0.0.1:${port}`,
        upstream: { url: upstream.url },
        auth: { enabled: false },
        audit: { path: "a.jsonl" },
      }),
    );
    const busyRun = track(spawnBin(["run", "--config", busy]));
    expect(await busyRun.exited).toBe(1);
    expect(busyRun.logs.some((line) => line.msg.includes("EADDRINUSE"))).toBe(true);
    blocker.close();
  });
});
