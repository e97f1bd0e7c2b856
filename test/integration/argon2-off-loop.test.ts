/**
 * G8: argon2 runs on the thread pool, never on the event loop. While wrong keys are being
 * verified against real argon2id hashes (each costs one run per configured key), the gateway's
 * event loop goes on turning: it is busy for a fraction of what the runs cost, and its longest
 * stall is shorter than one run.
 *
 * The hashes have the cost `mcpgw hash-key` gives them (RFC 9106: 64 MiB, t=3, p=4).
 * @node-rs/argon2's own default (19 MiB, t=2) takes about 6 ms a run on a small machine, less
 * than the stalls a loaded machine causes by itself (8 to 15 ms measured without any argon2
 * run), so no comparison with it could tell the two apart.
 */
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { verify } from "@node-rs/argon2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { hashApiKey } from "../../src/auth/api-keys.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { POST_HEADERS, TOOLS_LIST } from "../helpers/mcp-client.js";

const CONFIGURED = ["argon2-off-loop-key-a", "argon2-off-loop-key-b", "argon2-off-loop-key-c"];
const WRONG_KEYS = 3;

describe("argon2 and the event loop", () => {
  let upstream: ExampleServer;
  let gw: TestGateway;
  let hashes: string[];

  beforeAll(async () => {
    hashes = await Promise.all(CONFIGURED.map((key) => hashApiKey(key)));
    upstream = await startExampleServer();
    gw = await startGateway({
      upstream: { url: upstream.url },
      auth: { keys: hashes.map((keyHash, n) => ({ id: `real-${n}`, hash: keyHash })) },
    });
  });

  afterAll(async () => {
    await gw.stop();
    await upstream.close();
  });

  const wrongKeys = (prefix: string, count: number) =>
    Promise.all(
      Array.from({ length: count }, (_, n) =>
        fetch(gw.url, {
          method: "POST",
          headers: { ...POST_HEADERS, authorization: `Bearer ${prefix}-${n}` },
          body: TOOLS_LIST,
        }).then(async (res) => {
          await res.text();
          return res.status;
        }),
      ),
    );

  it("keeps the event loop turning while wrong keys cost argon2 runs", async () => {
    // What one argon2 run costs here: the shortest of a few, so that the bounds below are strict.
    const durations: number[] = [];
    for (let n = 0; n < 3; n++) {
      const started = performance.now();
      await verify(hashes[0] as string, "not-the-key");
      durations.push(performance.now() - started);
    }
    const oneRun = Math.min(...durations);
    // The request path's first run compiles and loads what later ones reuse: not measured.
    expect(await wrongKeys("argon2-off-loop-warm-up", 1)).toEqual([401]);

    const runs = () => gw.logs.filter((line) => line.msg === "argon2 verification").length;
    const runsBefore = runs();
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    const utilization = performance.eventLoopUtilization();
    const started = performance.now();
    const answers = await wrongKeys("argon2-off-loop-wrong", WRONG_KEYS);
    const elapsed = performance.now() - started;
    const { active } = performance.eventLoopUtilization(utilization);
    delay.disable();

    expect(answers).toEqual(Array(WRONG_KEYS).fill(401));
    // Every wrong key was tried against every configured hash while the loop was watched.
    const runsWatched = runs() - runsBefore;
    expect(runsWatched).toBe(WRONG_KEYS * CONFIGURED.length);
    expect(elapsed).toBeGreaterThan(oneRun * CONFIGURED.length * 0.8);
    const measured = `one argon2 run ${oneRun.toFixed(1)} ms, ${runsWatched} runs in ${elapsed.toFixed(0)} ms`;
    // On the loop, the runs alone would have kept it busy for runsWatched × oneRun; what it did
    // instead (three requests, client and gateway) takes a fraction of that.
    expect(active, `loop busy ${active.toFixed(1)} ms; ${measured}`).toBeLessThan(
      (runsWatched * oneRun) / 3,
    );
    // One run on the loop would stall it for a whole run at least.
    const longestStall = delay.max / 1e6;
    expect(longestStall, `longest stall ${longestStall.toFixed(1)} ms; ${measured}`).toBeLessThan(
      oneRun,
    );
  });
});
