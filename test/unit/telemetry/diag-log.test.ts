import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger, flushLogs } from "../../../src/log.js";
import { DiagToLog } from "../../../src/telemetry/diag-log.js";

interface Line {
  level: string;
  msg: string;
  details?: string[];
  repeated?: number;
}

function capture() {
  const lines: Line[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of chunk.toString().split("\n")) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  const log = createLogger("debug", sink);
  let now = 1_000_000;
  const diag = new DiagToLog(log, () => now);
  return {
    diag,
    lines: async () => {
      await flushLogs(log);
      return lines;
    },
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe("DiagToLog: the OpenTelemetry SDK's diagnostics in the gateway's log", () => {
  it("logs warnings and errors, each kind at most once a minute, and counts what it held back", async () => {
    const { diag, lines, advance } = capture();
    diag.warn("Dropped 16 spans because maxQueueSize reached");
    diag.warn("Dropped 3 spans because maxQueueSize reached");
    diag.warn("Dropped 40 spans because maxQueueSize reached");
    diag.error("export request failure (error: Error: connect ECONNREFUSED)");
    diag.info("starting");
    diag.debug("maxQueueSize reached, dropping spans");
    advance(60_000);
    diag.warn("Dropped 7 spans because maxQueueSize reached");
    expect(await lines()).toMatchObject([
      { level: "warn", msg: expect.stringMatching(/^tracing: Dropped 16 spans because/) },
      { level: "error", msg: expect.stringContaining("export request failure") },
      {
        level: "warn",
        msg: expect.stringMatching(/^tracing: Dropped 7 spans because/),
        repeated: 2,
      },
    ]);
  });

  it("keeps secrets the SDK quotes out of the log", async () => {
    const { diag, lines } = capture();
    diag.warn(
      'Header "authorization" has invalid value (Bearer collector-secret) and will be ignored',
    );
    diag.warn(
      "Configuration: Could not parse environment-provided export URL: 'http://user:pass@collector:4318/v1/traces', falling back to undefined",
    );
    diag.error("export failed", new Error("POST https://svc:hunter2@collector/v1/traces refused"));
    const logged = JSON.stringify(await lines());
    expect(logged).not.toContain("collector-secret");
    expect(logged).not.toContain("user:pass");
    expect(logged).not.toContain("hunter2");
    expect(logged).toContain('Header \\"authorization\\" has invalid value ([redacted])');
    expect(logged).toContain("http://[redacted]@collector:4318/v1/traces");
  });
});
