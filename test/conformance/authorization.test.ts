/**
 * The MCP conformance suite's `authorization` leg against the embedded authorization server:
 * `authorization-server-metadata-endpoint` (RFC 8414 metadata) and `authorization-code-grant`
 * (a public client registered with DCR, PKCE S256, state, `iss`, the RFC 8707 resource of the
 * gateway's MCP endpoint, the token response), with a user who signs in and allows access on the
 * gateway's pages (driven headless). The suite's authorization URL names no `scope`.
 *
 * `CONFORMANCE_REPORT=<file>` writes the table of docs/authorization-conformance.md to that file.
 */
import { writeFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { registerPublicClient } from "../helpers/browser-client.js";
import { node24 } from "../helpers/conformance.js";
import {
  type AuthorizationLeg,
  runAuthorizationLeg,
} from "../helpers/conformance-authorization-leg.js";
import { unusedPortUrl } from "../helpers/fake-upstreams.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import { cheapHash } from "../helpers/keys.js";

const USER = { username: "alice", password: "correct horse battery staple" };
const SCOPE = "mcp:read";

/**
 * Checks that do not pass, by `<scenario>/<check id>`, with the status and message they have and
 * why. An entry whose check starts passing fails this test, so the list only shrinks.
 */
const KNOWN_FAILURES: Record<string, { status: string; message: RegExp; reason: string }> = {};

let upstream: ExampleServer;
let gw: TestGateway;
let origin: string;
let leg: AuthorizationLeg;

beforeAll(async () => {
  const [node, server, hash, gatewayUrl] = await Promise.all([
    node24(),
    startExampleServer(),
    cheapHash(USER.password),
    unusedPortUrl(),
  ]);
  upstream = server;
  origin = new URL(gatewayUrl).origin;
  gw = await startGateway({
    listen: new URL(gatewayUrl).host,
    upstream: { url: upstream.url },
    auth: { oauth: { required_scopes: [SCOPE] } },
    authorization_server: {
      enabled: true,
      issuer: origin,
      users: [{ username: USER.username, password_hash: hash, scopes: [SCOPE] }],
    },
  });
  const callbackPort = Number(new URL(await unusedPortUrl()).port);
  const redirectUri = `http://127.0.0.1:${callbackPort}/callback`;
  const clientId = await registerPublicClient(origin, "MCP conformance suite", redirectUri);
  leg = await runAuthorizationLeg(node, {
    issuer: origin,
    clientId,
    resource: `${origin}/mcp`,
    callbackPort,
    user: USER,
  });
  if (process.env.CONFORMANCE_REPORT) await writeFile(process.env.CONFORMANCE_REPORT, report());
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await upstream?.close();
});

function checks() {
  return [...leg.scenarios].flatMap(([scenario, list]) =>
    list.map((check) => ({ key: `${scenario}/${check.id}`, ...check })),
  );
}

describe("conformance authorization leg against the embedded authorization server", () => {
  it("ran both scenarios", () => {
    expect([...leg.scenarios.keys()].sort()).toEqual([
      "authorization-code-grant",
      "authorization-server-metadata-endpoint",
    ]);
  });

  it("passes every check but the known failures", () => {
    const unexpected = checks()
      .filter((check) => check.status !== "SUCCESS" && KNOWN_FAILURES[check.key] === undefined)
      .map(({ key, status, errorMessage }) => `${key}: ${status} ${errorMessage ?? ""}`);
    expect(unexpected).toEqual([]);
  });

  it("still fails each known failure as described (fix it, then remove its entry)", () => {
    const found = new Map(checks().map((check) => [check.key, check]));
    for (const [key, known] of Object.entries(KNOWN_FAILURES)) {
      const check = found.get(key);
      expect(check?.status, key).toBe(known.status);
      expect(check?.errorMessage, key).toMatch(known.message);
    }
  });

  it("grants a code, with state and iss, and a token with no-store, to a request with no scope", () => {
    const grant = leg.scenarios.get("authorization-code-grant") ?? [];
    expect(grant.map(({ id, status, errorMessage }) => ({ id, status, errorMessage }))).toEqual([
      { id: "authorization-code-grant", status: "SUCCESS", errorMessage: undefined },
    ]);
  });
});

/** The table of docs/authorization-conformance.md. */
function report(): string {
  const lines = ["| Scenario | Check | Result | Why |", "|---|---|---|---|"];
  for (const check of checks()) {
    const [scenario] = check.key.split("/");
    const why =
      check.status === "SUCCESS"
        ? ""
        : (KNOWN_FAILURES[check.key]?.reason ?? check.errorMessage ?? "");
    lines.push(`| ${scenario} | ${check.id} | ${check.status} | ${why.replace(/\|/g, "\\|")} |`);
  }
  return `${lines.join("\n")}\n`;
}
