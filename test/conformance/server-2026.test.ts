/**
 * The MCP conformance suite's `server` leg, run against an SDK v2 upstream directly and through
 * the built `mcpgw run` in front of it (authenticated with an API key), at both protocol eras:
 * 2026-07-28 (stateless, `_meta` and `Mcp-Method` / `Mcp-Name` headers) and 2025-11-25
 * (`initialize`). Whatever passes directly must pass through the gateway.
 *
 * `CONFORMANCE_REPORT=<file>` writes the table of docs/protocol-eras.md to that file.
 */
import { writeFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Sdk2Server, startSdk2Server } from "../fixtures/sdk2-server.js";
import {
  node24,
  type Revision,
  requirements,
  runServerLeg,
  type ScenarioResult,
} from "../helpers/conformance.js";
import { type Daemon, keys, killDaemons, startDaemon } from "../helpers/daemon.js";
import { cheapHash } from "../helpers/keys.js";

const KEY = "conformance-key-0123456789";

/**
 * Scenarios that pass directly and fail through mcpgw, each with the one check that fails and
 * why. An entry that starts passing fails this test, so the list only shrinks.
 */
const KNOWN_DIVERGENCES: Record<string, { check: string; reason: string }> = {};

interface Leg {
  direct: Map<string, ScenarioResult>;
  gateway: Map<string, ScenarioResult>;
  required: string[];
  notScored: string[];
}

let upstream: Sdk2Server;
let daemon: Daemon;
const legs = new Map<Revision, Leg>();

beforeAll(async () => {
  const [node, server, hash] = await Promise.all([node24(), startSdk2Server(), cheapHash(KEY)]);
  upstream = server;
  daemon = await startDaemon(upstream.url, keys(["conformance", hash]));
  // One run at a time: the suite's stream scenarios wait 0.5-1.5 s for frames, which four
  // runs at once on two cores can miss.
  for (const revision of ["2026-07-28", "2025-11-25"] as const) {
    const direct = await runServerLeg(node, upstream.url, revision);
    const gateway = await runServerLeg(node, daemon.url, revision, `Bearer ${KEY}`);
    legs.set(revision, { direct, gateway, ...(await requirements(revision)) });
  }
  if (process.env.CONFORMANCE_REPORT) await writeFile(process.env.CONFORMANCE_REPORT, report());
}, 240_000);

afterAll(async () => {
  killDaemons();
  await upstream?.close();
});

function leg(revision: Revision): Leg {
  const found = legs.get(revision);
  if (found === undefined) throw new Error(`no conformance run for ${revision}`);
  return found;
}

describe.each(["2026-07-28", "2025-11-25"] as const)("conformance %s", (revision) => {
  it("ran every scenario the revision requires, both directly and through mcpgw", () => {
    const { direct, gateway, required } = leg(revision);
    for (const results of [direct, gateway])
      expect([...results.keys()]).toEqual(expect.arrayContaining(required));
  });

  it("passes through mcpgw every scenario that passes directly", () => {
    const { direct, gateway } = leg(revision);
    const regressions = [...direct]
      .filter(([scenario, result]) => result.passed && !gateway.get(scenario)?.passed)
      .filter(([scenario]) => KNOWN_DIVERGENCES[scenario] === undefined)
      .map(([scenario]) => ({ scenario, failed: gateway.get(scenario)?.failed }));
    expect(regressions).toEqual([]);
  });

  it("diverges only where listed, and there by exactly the listed check", () => {
    const { direct, gateway } = leg(revision);
    for (const [scenario, { check }] of Object.entries(KNOWN_DIVERGENCES)) {
      if (!direct.get(scenario)?.passed) continue;
      expect({ scenario, failed: gateway.get(scenario)?.failed }).toEqual({
        scenario,
        failed: [check],
      });
    }
  });
});

it("authenticated every request the suite sent through mcpgw with the API key", async () => {
  const audit = await daemon.auditLines();
  expect(audit.length).toBeGreaterThan(100);
  expect(audit.filter((line) => line.status === 401)).toEqual([]);
  // The Origin check runs before authentication: the DNS-rebinding scenario's foreign host.
  const unauthenticated = audit.filter((line) => line.key_id !== "conformance");
  expect(new Set(unauthenticated.map((line) => line.error))).toEqual(
    new Set(["origin_not_allowed"]),
  );
});

it("passes directly every scenario 2026-07-28 requires (the upstream is a complete fixture)", () => {
  const { direct, required } = leg("2026-07-28");
  const failing = required
    .filter((scenario) => !direct.get(scenario)?.passed)
    .map((scenario) => ({ scenario, failed: direct.get(scenario)?.failed }));
  expect(failing).toEqual([]);
});

/** The markdown table of docs/protocol-eras.md. */
function report(): string {
  const mark = (result: ScenarioResult | undefined) => {
    if (result === undefined) return "not run";
    if (result.passed) return "pass";
    const { failed } = result;
    return `FAIL (${failed.length > 2 ? `${failed.length} checks` : failed.join(", ")})`;
  };
  const lines = [
    "| Revision | Scenario | Scored | Direct | Through mcpgw |",
    "| --- | --- | --- | --- | --- |",
  ];
  for (const revision of ["2026-07-28", "2025-11-25"] as const) {
    const { direct, gateway, required, notScored } = leg(revision);
    for (const scenario of [...required, ...notScored]) {
      const scored = required.includes(scenario) ? "yes" : "no";
      lines.push(
        `| ${revision} | ${scenario} | ${scored} | ${mark(direct.get(scenario))} | ${mark(gateway.get(scenario))} |`,
      );
    }
  }
  return `${lines.join("\n")}\n`;
}
