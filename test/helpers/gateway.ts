/** Starts the gateway in this process on port 0, with its config, audit and logs in a temp dir. */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { vi } from "vitest";
import { stringify } from "yaml";
import type { AuditRecord } from "../../src/audit/record.js";
import { createLogger } from "../../src/log.js";
import { Gateway } from "../../src/runtime/gateway.js";
import { LOOPBACK_OUTBOUND } from "./outbound.js";

export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

export interface TestGateway {
  gateway: Gateway;
  url: string;
  dir: string;
  configFile: string;
  logs: LogLine[];
  rawLogs: () => string;
  /** Rewrites the config file (for reload tests). */
  writeConfig(config: unknown): Promise<void>;
  /** Waits until at least `count` audit lines are on disk and returns all of them. */
  auditRecords(count: number): Promise<AuditRecord[]>;
  stop(): Promise<void>;
}

export async function startGateway(config: Record<string, unknown>): Promise<TestGateway> {
  const dir = await mkdtemp(path.join(tmpdir(), "mcpgw-test-"));
  const configFile = path.join(dir, "mcpgw.yaml");
  const withDefaults = (next: object) => ({
    listen: "127.0.0.1:0",
    audit: { path: "audit.jsonl" },
    log: { level: "debug" },
    // The tests' identity providers and token endpoints listen on loopback.
    outbound: LOOPBACK_OUTBOUND,
    ...next,
  });
  await writeFile(configFile, stringify(withDefaults(config)));

  const logs: LogLine[] = [];
  let raw = "";
  const sink = new Writable({
    write(chunk, _encoding, done) {
      raw += chunk.toString();
      for (const line of chunk.toString().split("\n")) if (line) logs.push(JSON.parse(line));
      done();
    },
  });
  const gateway = await Gateway.start({ configFile, log: createLogger("debug", sink) });
  const auditFile = () => gateway.audit.path;

  return {
    gateway,
    url: gateway.url,
    dir,
    configFile,
    logs,
    rawLogs: () => raw,
    writeConfig: (next) => writeFile(configFile, stringify(withDefaults(next as object))),
    async auditRecords(count) {
      return vi.waitFor(
        async () => {
          await gateway.audit.flush();
          const text = await readFile(auditFile(), "utf8").catch(() => "");
          const records = text
            .split("\n")
            .filter(Boolean)
            .map((line) => JSON.parse(line) as AuditRecord);
          if (records.length < count) throw new Error(`${records.length} of ${count} audit lines`);
          return records;
        },
        { timeout: 5_000, interval: 10 },
      );
    },
    async stop() {
      await gateway.shutdown("test");
      await rm(dir, { recursive: true, force: true });
    },
  };
}
