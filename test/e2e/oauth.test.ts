import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, writeFile } from "node:fs/promises";
import type { ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { BIN, type RunningBin, spawnBin } from "../helpers/bin.js";
import { startHttpServer } from "../helpers/fake-upstreams.js";
import {
  type JwksServer,
  makeKey,
  type SigningKey,
  signToken,
  startJwksServer,
} from "../helpers/jwks-server.js";
import { initializeStatus } from "../helpers/mcp-client.js";
import { LOOPBACK_OUTBOUND } from "../helpers/outbound.js";

const AUDIENCE = "mcpgw-e2e";

let upstream: ExampleServer;
let jwks: JwksServer;
let key: SigningKey;
const running: RunningBin[] = [];

beforeAll(async () => {
  key = await makeKey("RS256", "e2e-1");
  [upstream, jwks] = await Promise.all([startExampleServer(), startJwksServer([key])]);
});

afterEach(() => {
  for (const bin of running.splice(0)) if (bin.child.exitCode === null) bin.child.kill("SIGKILL");
});

afterAll(async () => {
  await upstream.close();
  await jwks.close();
});

function config(oauth: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return {
    listen: "127.0.0.1:0",
    upstream: { url: upstream.url },
    audit: { path: "audit.jsonl" },
    outbound: LOOPBACK_OUTBOUND,
    auth: {
      oauth: {
        enabled: true,
        issuer: jwks.issuer,
        audience: AUDIENCE,
        jwks_url: jwks.url,
        ...oauth,
      },
    },
    ...extra,
  };
}

async function configFile(content: Record<string, unknown>) {
  const dir = await mkdtemp(path.join(tmpdir(), "mcpgw-e2e-oauth-"));
  const file = path.join(dir, "mcpgw.yaml");
  await writeFile(file, stringify(content));
  return { file, write: (next: Record<string, unknown>) => writeFile(file, stringify(next)) };
}

describe("mcpgw run with OAuth (the built binary)", () => {
  it("exits 78 with `oauth: prime jwks:` when the JWKS cannot be fetched at startup", async () => {
    const { file } = await configFile(config({ jwks_url: "http://127.0.0.1:1/jwks.json" }));
    const bin = spawnBin(["run", "--config", file]);
    running.push(bin);
    expect(await bin.exited).toBe(78);
    const fatal = bin.logs.find((line) => line.level === "fatal");
    expect(fatal?.msg).toMatch(/^oauth: prime jwks: GET http:\/\/127\.0\.0\.1:1\/jwks\.json: /);
  });

  it("applies SIGHUP changes to required_scopes, audience and enabled", async () => {
    const { file, write } = await configFile(config({}));
    const bin = spawnBin(["run", "--config", file]);
    running.push(bin);
    const url = (await bin.waitForLog((line) => line.msg === "listening")).url as string;
    const token = await signToken(key, jwks.issuer, AUDIENCE, { claims: { scope: "mcp:read" } });
    expect(await initializeStatus(url, token)).toBe(200);

    const reload = async (next: Record<string, unknown>, generation: number) => {
      await write(next);
      bin.child.kill("SIGHUP");
      return bin.waitForLog(
        (line) => line.msg === "config reloaded" && line.generation === generation,
      );
    };

    const scoped = await reload(config({ required_scopes: ["mcp:write"] }), 2);
    expect(scoped.changed).toEqual(["auth.oauth.required_scopes"]);
    expect(await initializeStatus(url, token)).toBe(403);

    await reload(config({ audience: "another-audience" }), 3);
    expect(await initializeStatus(url, token)).toBe(401);

    await reload(config({ audience: AUDIENCE }), 4);
    expect(await initializeStatus(url, token)).toBe(200);

    const disabled = config({ enabled: false });
    (disabled.auth as Record<string, unknown>).enabled = false;
    await reload(disabled, 5);
    // Logged with the reload, not necessarily before its "config reloaded" line.
    await bin.waitForLog((line) => line.msg.startsWith("auth.enabled is false"));
    expect(await initializeStatus(url)).toBe(200);
    const origin = new URL(url).origin;
    expect((await fetch(`${origin}/.well-known/oauth-protected-resource`)).status).toBe(404);

    // public_url is the route's resource and path: a reload moves both, no restart needed.
    await reload(config({ public_url: "https://gw.example.com/mcp" }), 6);
    const metadata = await fetch(`${origin}/.well-known/oauth-protected-resource`);
    expect(await metadata.json()).toMatchObject({ resource: "https://gw.example.com/mcp" });
    await reload(config({ public_url: "https://gw.example.com/v2/mcp" }), 7);
    expect(await initializeStatus(`${origin}/v2/mcp`, token)).toBe(200);
    expect(await initializeStatus(url, token)).toBe(404);
    expect(bin.logs.some((line) => line.msg.startsWith("restart required"))).toBe(false);
    bin.child.kill("SIGTERM");
    expect(await bin.exited).toBe(0);
  });

  it("survives SIGHUP and honours SIGTERM while still starting (JWKS fetch in progress)", async () => {
    let requested: () => void = () => {};
    const fetching = new Promise<void>((resolve) => {
      requested = resolve;
    });
    const held: ServerResponse[] = [];
    const slowJwks = await startHttpServer((_req, res) => {
      held.push(res);
      requested();
    });
    const answer = () => {
      for (const res of held.splice(0)) {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ keys: [key.publicJwk] }));
      }
    };
    const { file } = await configFile(config({ jwks_url: slowJwks.url }));

    const reloaded = spawnBin(["run", "--config", file]);
    running.push(reloaded);
    await fetching;
    reloaded.child.kill("SIGHUP");
    answer();
    await reloaded.waitForLog((line) => line.msg === "listening");
    expect(reloaded.child.exitCode).toBeNull();

    const stopped = spawnBin(["run", "--config", file]);
    running.push(stopped);
    await new Promise<void>((resolve) => {
      requested = resolve;
    });
    stopped.child.kill("SIGTERM");
    answer();
    expect(await stopped.exited).toBe(0);
    expect(stopped.logs.map((line) => line.msg)).toEqual(
      expect.arrayContaining(["listening", "stopped"]),
    );
    await slowJwks.close();
  });

  it("warns that the metadata advertises a wildcard listen address without public_url", async () => {
    // In a network namespace of its own, where the wildcard address reaches nothing but the
    // namespace's loopback, which is down; the JWKS there is unreachable, so the run ends 78.
    const { file } = await configFile(config({}, { listen: "0.0.0.0:8080" }));
    const child = spawn("unshare", ["--net", process.execPath, BIN, "run", "--config", file], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    const [code] = await once(child, "exit");
    const lines = stdout
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { level: string; msg: string });
    expect(lines[0]).toMatchObject({
      level: "warn",
      msg: expect.stringContaining("oauth metadata advertises listen address"),
    });
    expect(code).toBe(78);
  });
});
