import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";
import { connectClient, initializeStatus, textOf } from "../helpers/mcp-client.js";

const KEY = "test-key-reload-0123456789";

describe("reload", () => {
  let upstreamA: ExampleServer;
  let upstreamB: ExampleServer;
  let seenByB = 0;
  let keys: { keys: { id: string; hash: string }[] };

  beforeAll(async () => {
    upstreamA = await startExampleServer();
    upstreamB = await startExampleServer({ onRequest: () => seenByB++ });
    keys = { keys: [{ id: "reload", hash: await cheapHash(KEY) }] };
  });

  afterAll(async () => {
    await upstreamA.close();
    await upstreamB.close();
  });

  it("keeps the upstream's keep-alive connection across a reload that leaves the upstream as it was", async () => {
    const ports: (number | undefined)[] = [];
    const upstream = await startExampleServer({
      onRequest: (req) => ports.push(req.socket.remotePort),
    });
    const config = (extra: object) => ({ upstream: { url: upstream.url }, auth: keys, ...extra });
    const gw = await startGateway(config({}));
    expect(await initializeStatus(gw.url, KEY)).toBe(200);

    await gw.writeConfig(config({ log: { level: "info" } }));
    await gw.gateway.reload("SIGHUP");
    expect(gw.gateway.generation.id).toBe(2);
    expect(await initializeStatus(gw.url, KEY)).toBe(200);
    expect(ports[1]).toBe(ports[0]);

    // A changed upstream setting is a new pool, and the old one closes with its generation.
    await gw.writeConfig({
      ...config({ log: { level: "info" } }),
      upstream: { url: upstream.url, timeout: "30s" },
    });
    await gw.gateway.reload("SIGHUP");
    expect(gw.gateway.generation.id).toBe(3);
    expect(await initializeStatus(gw.url, KEY)).toBe(200);
    expect(ports).toHaveLength(3);
    expect(ports[2]).not.toBe(ports[1]);
    await gw.stop();
    await upstream.close();
  });

  it("finishes in-flight requests on their generation and sends new ones to the new upstream", async () => {
    const gw: TestGateway = await startGateway({ upstream: { url: upstreamA.url }, auth: keys });
    const { client, close } = await connectClient(gw.url, { authorization: `Bearer ${KEY}` });
    const first = gw.gateway.generation;
    let progressed: () => void = () => {};
    const progress = new Promise<void>((resolve) => {
      progressed = resolve;
    });
    const call = client.callTool(
      { name: "countdown", arguments: { steps: 3, interval_ms: 100 } },
      undefined,
      {
        onprogress: () => progressed(),
      },
    );
    await progress;

    await gw.writeConfig({ upstream: { url: upstreamB.url }, auth: keys });
    await gw.gateway.reload("SIGHUP");
    expect(gw.gateway.generation.id).toBe(first.id + 1);
    expect(first.inFlight).toBeGreaterThan(0);

    expect(textOf(await call)).toBe("done");
    expect(seenByB).toBe(0);
    expect(await initializeStatus(gw.url, KEY)).toBe(200);
    expect(seenByB).toBe(1);
    const reloaded = gw.logs.find((line) => line.msg === "config reloaded");
    expect(reloaded).toMatchObject({ changed: ["upstream.url"], generation: 2, trigger: "SIGHUP" });
    await close();
    await gw.stop();
  });

  it("with audit.on_error: fail_closed, refuses requests with 503 while audit writes fail", async () => {
    const config = (path: string) => ({
      upstream: { url: upstreamA.url },
      auth: keys,
      audit: { path, on_error: "fail_closed" },
    });
    const gw = await startGateway(config("audit.jsonl"));
    expect(await initializeStatus(gw.url, KEY)).toBe(200);

    // Every write to /dev/full fails with ENOSPC, as on a full disk.
    await gw.writeConfig(config("/dev/full"));
    await gw.gateway.reload("SIGHUP");
    expect(await initializeStatus(gw.url, KEY)).toBe(200);
    await vi.waitFor(() => expect(gw.gateway.audit.healthy).toBe(false));
    const refused = await fetch(gw.url, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY}` },
      body: "{}",
    });
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({ error: "audit_unavailable" });
    expect(
      gw.logs.some((line) => line.level === "error" && line.msg.startsWith("audit write failed")),
    ).toBe(true);

    await gw.writeConfig(config("audit.jsonl"));
    await gw.gateway.reload("SIGHUP");
    await vi.waitFor(() => expect(gw.gateway.audit.healthy).toBe(true));
    expect(await initializeStatus(gw.url, KEY)).toBe(200);
    // The lines queued while the disk was full are written once it can be.
    const records = await gw.auditRecords(4);
    expect(records.map((record) => record.status)).toEqual([200, 200, 503, 200]);
    await gw.stop();
  });
});
