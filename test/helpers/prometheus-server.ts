/**
 * A real Prometheus (built by test/tools/build.sh) for a test file, on a free loopback port,
 * scraping the given targets every second, its TSDB in a temp dir. Queried through its HTTP API
 * as Grafana does.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { vi } from "vitest";
import { freePort } from "./fake-upstreams.js";
import { toolPath } from "./tools.js";

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface TestPrometheus {
  url: string;
  /** An instant query (`/api/v1/query`); throws on a PromQL error. */
  query(expr: string): Promise<PromSample[]>;
  /** Waits until every target is scraped and up. */
  waitForTargets(): Promise<void>;
  /** `/api/v1/rules`: each alerting rule with its health and state. */
  rules(): Promise<{ name: string; query: string; health: string; state: string }[]>;
  stop(): Promise<void>;
}

/**
 * `targets`: `host:port` of each metrics endpoint. `ruleFiles`: alerting rule files to load
 * (their alerts are then listed by {@link TestPrometheus.alerts}).
 */
export async function startPrometheus(
  targets: string[],
  ruleFiles: string[] = [],
): Promise<TestPrometheus> {
  const binary = toolPath("prometheus");
  const port = await freePort();
  const dir = await mkdtemp(path.join(tmpdir(), "mcpgw-prometheus-"));
  const configFile = path.join(dir, "prometheus.yml");
  await writeFile(
    configFile,
    `global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ${JSON.stringify(ruleFiles)}
scrape_configs:
  - job_name: mcpgw
    static_configs:
      - targets: ${JSON.stringify(targets)}
`,
  );
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(
    binary,
    [
      `--config.file=${configFile}`,
      `--web.listen-address=127.0.0.1:${port}`,
      `--storage.tsdb.path=${path.join(dir, "data")}`,
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let output = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  });
  const exited = once(child, "exit").then(([code]) => {
    throw new Error(`prometheus exited (${code}): ${output}`);
  });
  exited.catch(() => {});
  await Promise.race([
    exited,
    vi.waitFor(
      async () => {
        const res = await fetch(`${url}/-/ready`);
        if (!res.ok) throw new Error(`prometheus not ready: ${res.status}`);
      },
      { timeout: 30_000, interval: 100 },
    ),
  ]);

  const prometheus: TestPrometheus = {
    url,
    async query(expr) {
      const res = await fetch(`${url}/api/v1/query?${new URLSearchParams({ query: expr })}`);
      const body = (await res.json()) as {
        status: string;
        error?: string;
        data: { resultType: string; result: PromSample[] };
      };
      if (body.status !== "success") throw new Error(`PromQL ${expr}: ${body.error}`);
      return body.data.result;
    },
    async rules() {
      const res = await fetch(`${url}/api/v1/rules?type=alert`);
      const body = (await res.json()) as {
        data: {
          groups: { rules: { name: string; query: string; health: string; state: string }[] }[];
        };
      };
      return body.data.groups.flatMap((group) => group.rules);
    },
    async waitForTargets() {
      await vi.waitFor(
        async () => {
          const up = await prometheus.query("up");
          if (up.length !== targets.length || up.some((sample) => sample.value[1] !== "1")) {
            throw new Error(`targets not all up yet: ${JSON.stringify(up)}`);
          }
        },
        { timeout: 20_000, interval: 200 },
      );
    },
    async stop() {
      if (child.exitCode === null) {
        const done = once(child, "exit");
        child.kill("SIGTERM");
        await done;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
  return prometheus;
}
