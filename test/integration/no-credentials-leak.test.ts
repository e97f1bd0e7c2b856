/**
 * G4: the credentials a client presents, OAuth access tokens and API keys, accepted or refused,
 * never come back in an answer and never reach the logs (at debug level), the audit file or a
 * span exported over OTLP.
 */
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { startGateway, type TestGateway } from "../helpers/gateway.js";
import {
  type JwksServer,
  makeKey,
  type SigningKey,
  signToken,
  startJwksServer,
} from "../helpers/jwks-server.js";
import { cheapHash } from "../helpers/keys.js";
import { INITIALIZE, POST_HEADERS } from "../helpers/mcp-client.js";
import { type OtlpReceiver, startOtlpReceiver } from "../helpers/otlp-receiver.js";

const AUDIENCE = "mcpgw-no-leak";
const API_KEY = "no-leak-suite-api-key-0123456789";
const WRONG_KEY = "no-leak-suite-wrong-key-9876543210";
const UNPARSEABLE_KEY = "no-leak-suite-key-with-a-bad-char!0123456789";

interface Presented {
  name: string;
  token: string;
  status: number;
}

describe("credentials in logs, audit lines, spans and answers", () => {
  let upstream: ExampleServer;
  let jwks: JwksServer;
  let receiver: OtlpReceiver;
  let key: SigningKey;
  let gw: TestGateway;

  beforeAll(async () => {
    key = await makeKey("ES256", "no-leak-1");
    [upstream, jwks, receiver] = await Promise.all([
      startExampleServer(),
      startJwksServer([key]),
      startOtlpReceiver(),
    ]);
    gw = await startGateway({
      upstream: { url: upstream.url },
      auth: {
        keys: [{ id: "no-leak", hash: await cheapHash(API_KEY) }],
        oauth: {
          enabled: true,
          issuer: jwks.issuer,
          audience: AUDIENCE,
          jwks_url: jwks.url,
          required_scopes: ["mcp:read"],
        },
      },
      telemetry: { enabled: true, otlp_endpoint: receiver.url, service_name: "mcpgw-no-leak" },
    });
  });

  afterAll(async () => {
    await gw.stop();
    await Promise.all([upstream.close(), jwks.close(), receiver.close()]);
  });

  it("never logs, audits, traces or answers back an access token or key, accepted or refused", async () => {
    const sign = (options: Parameters<typeof signToken>[3] = {}, audience = AUDIENCE) =>
      signToken(key, jwks.issuer, audience, options);
    const good = await sign({ claims: { sub: "alice", client_id: "no-leak-client" } });
    const tampered = `${good.slice(0, -4)}${good.endsWith("AAAA") ? "BBBB" : "AAAA"}`;
    const presented: Presented[] = [
      { name: "accepted", token: good, status: 200 },
      { name: "accepted again, from the cache", token: good, status: 200 },
      { name: "expired", token: await sign({ expiresIn: -120 }), status: 401 },
      { name: "another audience", token: await sign({}, "another-api"), status: 401 },
      { name: "bad signature", token: tampered, status: 401 },
      {
        name: "unknown kid",
        token: await signToken(await makeKey("ES256", "stranger"), jwks.issuer, AUDIENCE),
        status: 401,
      },
      {
        name: "not an access token",
        token: await sign({ header: { typ: "dpop+jwt" } }),
        status: 401,
      },
      { name: "without the scope", token: await sign({ claims: { scope: "other" } }), status: 403 },
      { name: "API key", token: API_KEY, status: 200 },
      { name: "wrong API key", token: WRONG_KEY, status: 401 },
      { name: "a character RFC 6750 refuses", token: UNPARSEABLE_KEY, status: 401 },
    ];

    const answers: string[] = [];
    for (const { name, token, status } of presented) {
      const res = await fetch(gw.url, {
        method: "POST",
        headers: { ...POST_HEADERS, authorization: `Bearer ${token}` },
        body: INITIALIZE,
      });
      expect(res.status, name).toBe(status);
      answers.push(`${JSON.stringify([...res.headers])}\n${await res.text()}`);
    }
    // The gateway's own 404 and 405, with a token presented.
    const elsewhere = await fetch(new URL("/not-a-route", gw.url), {
      method: "POST",
      headers: { ...POST_HEADERS, authorization: `Bearer ${good}` },
      body: INITIALIZE,
    });
    expect(elsewhere.status).toBe(404);
    answers.push(`${JSON.stringify([...elsewhere.headers])}\n${await elsewhere.text()}`);
    const put = await fetch(gw.url, {
      method: "PUT",
      headers: { authorization: `Bearer ${good}` },
    });
    expect(put.status).toBe(405);
    answers.push(`${JSON.stringify([...put.headers])}\n${await put.text()}`);

    // Every request above has its audit line and its server span before anything is searched.
    const requests = presented.length + 2;
    await gw.auditRecords(requests);
    await gw.gateway.tracing?.forceFlush();
    const spans = await receiver.waitForSpans(
      (all) => all.filter((span) => span.kind === 2).length >= requests,
    );
    // The identities are there: what is searched below is the record of these requests.
    expect(spans.map((span) => span.attributes["mcp.auth.result"])).toEqual(
      expect.arrayContaining(["ok", "expired", "bad_signature", "unknown_kid", "unknown_key"]),
    );
    expect(gw.logs.length).toBeGreaterThan(0);

    const audit = await readFile(gw.gateway.audit.path, "utf8");
    const where: Record<string, string> = {
      answers: answers.join("\n"),
      logs: gw.rawLogs(),
      audit,
      spans: JSON.stringify(spans.map(({ attributes, resource }) => ({ attributes, resource }))),
    };
    expect(where.audit).toContain('"sub":"alice"');
    for (const { name, token } of presented) {
      // The signature alone is a secret's worth of the token: it must not appear either.
      const parts = token.includes(".") ? [token, token.split(".")[2] as string] : [token];
      for (const [place, text] of Object.entries(where)) {
        for (const part of parts) expect(text.includes(part), `${name} in ${place}`).toBe(false);
      }
    }
  });
});
