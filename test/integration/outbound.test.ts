/**
 * The guard of the fetches the gateway makes itself (SSRF): loopback, private and link-local
 * addresses refused unless `outbound` allows them, no redirect to another origin, bounded size
 * and time. Against real local servers: one that redirects, one that streams forever, one that
 * drips a byte at a time; then through a gateway, for `jwks_url` and a token endpoint.
 */
import type { ServerResponse } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ExampleServer, startExampleServer } from "../../examples/mcp-server.js";
import { isSpecialUseAddress } from "../../src/lib/addresses.js";
import { Outbound, OutboundError } from "../../src/lib/outbound.js";
import { SecretBox } from "../../src/secrets/cipher.js";
import { type RunningServer, startHttpServer } from "../helpers/fake-upstreams.js";
import { startGateway } from "../helpers/gateway.js";
import { type JwksServer, makeKey, startJwksServer } from "../helpers/jwks-server.js";
import { cheapHash } from "../helpers/keys.js";
import { POST_HEADERS, TOOLS_LIST } from "../helpers/mcp-client.js";
import { loopbackOutbound } from "../helpers/outbound.js";
import { startTokenServer, type TokenServer } from "../helpers/token-server.js";

const GET = { timeoutMs: 2_000, maxBytes: 64 * 1024, followRedirects: true } as const;
const refusing = new Outbound({ allow_private_addresses: false, allowed_networks: [] });
const loopback = loopbackOutbound();

let jwks: JwksServer;
/** Redirects by path: /same to its own /keys, /away to `jwks` (another origin), /loop to itself. */
let redirector: RunningServer;
/** Answers 200 and sends data until the client goes away. */
let endless: RunningServer;
/** Sends one byte every 50 ms, forever. */
let dripping: RunningServer;

async function failure(promise: Promise<unknown>): Promise<OutboundError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(OutboundError);
  return error as OutboundError;
}

function stream(res: ServerResponse, chunk: Buffer, everyMs: number): void {
  res.writeHead(200, { "content-type": "application/json" });
  const timer = setInterval(() => res.write(chunk), everyMs);
  res.on("close", () => clearInterval(timer));
}

beforeAll(async () => {
  jwks = await startJwksServer([await makeKey("RS256", "k1")]);
  redirector = await startHttpServer((req, res) => {
    const own = `http://127.0.0.1:${(req.socket.localPort as number).toString()}`;
    const to: Record<string, string> = {
      "/same": `${own}/keys`,
      "/away": jwks.url,
      "/loop": `${own}/loop`,
    };
    if (req.url === "/keys") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ keys: [] }));
      return;
    }
    res.writeHead(req.url === "/post" ? 307 : 302, { location: to[req.url ?? ""] ?? jwks.url });
    res.end();
  });
  endless = await startHttpServer((_req, res) => stream(res, Buffer.alloc(64 * 1024, 32), 1));
  dripping = await startHttpServer((_req, res) => stream(res, Buffer.from(" "), 50));
});

afterAll(async () => {
  await Promise.all([jwks?.close(), redirector?.close(), endless?.close(), dripping?.close()]);
  await Promise.all([refusing.close(), loopback.close()]);
});

describe("addresses", () => {
  it("knows loopback, private, shared, link-local and other special-use addresses", () => {
    const special = [
      "127.0.0.1",
      "127.8.9.10",
      "10.1.2.3",
      "172.16.0.1",
      "172.31.255.255",
      "192.168.1.1",
      "100.64.0.1",
      "169.254.169.254",
      "0.0.0.0",
      "224.0.0.1",
      "255.255.255.255",
      "::1",
      "::",
      "::ffff:127.0.0.1",
      "::ffff:10.0.0.1",
      "fd00::1",
      "fe80::1",
      "ff02::1",
      "64:ff9b::a00:1",
      "not an address",
    ];
    const public_ = [
      "8.8.8.8",
      "172.32.0.1",
      "192.169.0.1",
      "2001:4860:4860::8888",
      "::ffff:8.8.8.8",
    ];
    expect(special.filter((address) => !isSpecialUseAddress(address))).toEqual([]);
    expect(public_.filter(isSpecialUseAddress)).toEqual([]);
  });

  it("refuses a loopback server by default, by IP and by name, before any request reaches it", async () => {
    const before = jwks.fetches;
    for (const url of [jwks.url, jwks.url.replace("127.0.0.1", "localhost")]) {
      const refused = await failure(refusing.fetch(url, GET));
      expect(refused.reason).toBe("address");
      expect(refused.message).toMatch(
        /^GET http:\/\/(127\.0\.0\.1|localhost):\d+\/\.well-known\/jwks\.json: (127\.0\.0\.1 is|localhost is at (127\.0\.0\.1|::1),) a loopback, private or link-local address/,
      );
      expect(refused.message).toContain("outbound.allowed_networks");
    }
    expect(jwks.fetches).toBe(before);
  });

  it("connects where allowed_networks or allow_private_addresses says", async () => {
    const narrow = new Outbound({
      allow_private_addresses: false,
      allowed_networks: ["127.0.0.1"],
    });
    const other = new Outbound({
      allow_private_addresses: false,
      allowed_networks: ["10.0.0.0/8"],
    });
    const all = new Outbound({ allow_private_addresses: true, allowed_networks: [] });
    try {
      expect((await narrow.fetch(jwks.url, GET)).status).toBe(200);
      expect((await all.fetch(jwks.url, GET)).status).toBe(200);
      expect((await failure(other.fetch(jwks.url, GET))).reason).toBe("address");
    } finally {
      await Promise.all([narrow.close(), other.close(), all.close()]);
    }
  });
});

describe("redirects", () => {
  it("follows a redirect on the same origin", async () => {
    const response = await loopback.fetch(`${origin(redirector)}/same`, GET);
    expect(await response.json()).toEqual({ keys: [] });
  });

  it("refuses a redirect to another origin, which is never asked", async () => {
    const before = jwks.fetches;
    const refused = await failure(loopback.fetch(`${origin(redirector)}/away`, GET));
    expect(refused.reason).toBe("redirect");
    expect(refused.message).toContain(`another origin (${new URL(jwks.url).origin})`);
    expect(jwks.fetches).toBe(before);
  });

  it("stops a redirect loop, and follows none for a POST or when told not to", async () => {
    const loop = await failure(loopback.fetch(`${origin(redirector)}/loop`, GET));
    expect(loop.message).toMatch(/more than 3 redirects/);
    const requests = redirector.requests.length;
    const post = await failure(
      loopback.fetch(`${origin(redirector)}/post`, { ...GET, method: "POST", body: "a=b" }),
    );
    expect(post.reason).toBe("redirect");
    const get = await failure(
      loopback.fetch(`${origin(redirector)}/same`, { ...GET, followRedirects: false }),
    );
    expect(get.reason).toBe("redirect");
    expect(redirector.requests.length - requests).toBe(2);
  });
});

describe("size and time", () => {
  it("cuts an answer that streams forever at the size limit, long before the deadline", async () => {
    const started = performance.now();
    const cut = await failure(
      loopback.fetch(origin(endless), { ...GET, timeoutMs: 30_000, maxBytes: 256 * 1024 }),
    );
    expect(cut.reason).toBe("too_large");
    expect(cut.message).toContain("exceeds 262144 bytes");
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it("refuses a declared Content-Length over the limit without reading it", async () => {
    const big = await startHttpServer((_req, res) => {
      res.writeHead(200, { "content-length": String(10 * 1024 * 1024) });
      res.write(Buffer.alloc(1024));
    });
    try {
      const cut = await failure(loopback.fetch(origin(big), { ...GET, maxBytes: 1024 * 1024 }));
      expect(cut.reason).toBe("too_large");
    } finally {
      await big.close();
    }
  });

  it("gives up on an answer that drips forever at the deadline", async () => {
    const slow = await failure(loopback.fetch(origin(dripping), { ...GET, timeoutMs: 300 }));
    expect(slow.reason).toBe("timeout");
    expect(slow.message).toContain("within 300 ms");
  });
});

describe("the gateway's fetches", () => {
  let tokens: TokenServer;
  let upstream: ExampleServer;
  const API_KEY = "outbound-test-key-0123456789abcdef";
  const ENCRYPTION_KEY = "outbound-test-encryption-key-0123456789";

  beforeAll(async () => {
    [tokens, upstream] = await Promise.all([
      startTokenServer({
        clientId: "gw",
        clientSecret: "s3cret",
        resource: "https://t",
        ttl: 3600,
      }),
      startExampleServer({ jsonResponse: true }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([tokens?.close(), upstream?.close()]);
  });

  const oauth = (url: string) => ({
    oauth: { enabled: true, issuer: jwks.issuer, audience: "mcpgw-test", jwks_url: url },
  });

  it("does not start on a jwks_url whose name resolves to a loopback address unless outbound allows it", async () => {
    const before = jwks.fetches;
    // A literal loopback IP is refused with the config (test/unit/config/load.test.ts); a name
    // is refused on the address it resolves to.
    const start = startGateway({
      upstream: { url: upstream.url },
      outbound: {},
      auth: oauth(jwks.url.replace("127.0.0.1", "localhost")),
    });
    await expect(start).rejects.toThrow(
      /prime jwks: GET http:\/\/localhost:\d+\/\.well-known\/jwks\.json: localhost is at (127\.0\.0\.1|::1), a loopback, private or link-local address: allow it with outbound\.allowed_networks/,
    );
    expect(jwks.fetches).toBe(before);
  });

  it("does not start on a JWKS that streams forever or redirects away", async () => {
    for (const [url, problem] of [
      [origin(endless), /exceeds 1048576 bytes/],
      [`${origin(redirector)}/away`, /redirected to another origin/],
    ] as const) {
      await expect(
        startGateway({ upstream: { url: upstream.url }, auth: oauth(url) }),
      ).rejects.toThrow(problem);
    }
  });

  it("refuses a token endpoint whose name resolves to a loopback address, or one that redirects away: 502 outbound_refused, not retried", async () => {
    const tokenAuth = (token_url: string) => ({
      type: "client_credentials",
      token_url,
      client_id: "gw",
      client_secret: new SecretBox(ENCRYPTION_KEY).seal("s3cret"),
      resource: "https://t",
    });
    const redirectorRequests = redirector.requests.length;
    const gw = await startGateway({
      outbound: { allowed_networks: [] },
      secrets: { encryption_key: ENCRYPTION_KEY },
      auth: { keys: [{ id: "caller", hash: await cheapHash(API_KEY) }] },
      routes: [
        {
          path: "/private/mcp",
          upstream: {
            url: upstream.url,
            auth: tokenAuth(tokens.tokenUrl.replace("127.0.0.1", "localhost")),
          },
        },
      ],
    });
    const allowed = await startGateway({
      secrets: { encryption_key: ENCRYPTION_KEY },
      auth: { keys: [{ id: "caller", hash: await cheapHash(API_KEY) }] },
      routes: [
        {
          path: "/away/mcp",
          upstream: { url: upstream.url, auth: tokenAuth(`${origin(redirector)}/away`) },
        },
      ],
    });
    try {
      const before = tokens.tokenRequests;
      for (const [url, path] of [
        [gw.url, "/private/mcp"],
        [allowed.url, "/away/mcp"],
      ] as const) {
        const res = await fetch(`${new URL(url).origin}${path}`, {
          method: "POST",
          headers: { ...POST_HEADERS, authorization: `Bearer ${API_KEY}` },
          body: TOOLS_LIST,
        });
        expect(res.status).toBe(502);
        expect(((await res.json()) as { error: { data: unknown } }).error.data).toMatchObject({
          error: "upstream_auth_failed",
          upstream_auth: "outbound_refused",
        });
      }
      expect(tokens.tokenRequests).toBe(before);
      // The redirecting endpoint was asked once: a refusal is not retried.
      expect(redirector.requests.length - redirectorRequests).toBe(1);
      const [line] = await gw.auditRecords(1);
      expect(line).toMatchObject({ status: 502, upstream_auth: "outbound_refused" });
    } finally {
      await Promise.all([gw.stop(), allowed.stop()]);
    }
  });
});

function origin(server: RunningServer): string {
  return new URL(server.url).origin;
}
