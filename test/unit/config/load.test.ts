import { describe, expect, it } from "vitest";
import { diffConfig } from "../../../src/config/diff.js";
import { parseConfig } from "../../../src/config/load.js";
import { parseListen } from "../../../src/config/schema.js";
import { ConfigError } from "../../../src/errors.js";

const FILE = "/etc/mcpgw/mcpgw.yaml";
const HASH =
  "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
const BASE = `upstream:
  url: http://127.0.0.1:3001/mcp
auth:
  keys:
    - id: ci
      hash: "${HASH}"
audit:
  path: audit.jsonl
`;

function problems(text: string, env: NodeJS.ProcessEnv = {}): readonly string[] {
  try {
    parseConfig(text, FILE, env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error("expected the config to be refused");
}

describe("parseConfig", () => {
  it("refuses a fetched URL at a loopback, private or link-local IP unless outbound allows it, at its line", () => {
    const text = `listen: "127.0.0.1:8080"
audit: {path: audit.jsonl}
auth:
  oauth:
    enabled: true
    issuer: https://idp.example.com/
    audience: mcpgw
    jwks_url: http://10.20.0.5/jwks.json
routes:
  - path: /a/mcp
    upstream:
      url: http://127.0.0.1:3001/mcp
      auth:
        type: client_credentials
        token_url: "http://[fd00::1]/token"
        client_id: gw
        client_secret: s
  - path: /b/mcp
    upstream:
      url: http://127.0.0.1:3002/mcp
      auth:
        type: client_credentials
        token_url: http://169.254.169.254/token
        client_id: gw
        client_secret: s
`;
    expect(problems(text)).toEqual([
      `${FILE}:8:15 auth.oauth.jwks_url: 10.20.0.5 is a loopback, private or link-local address, which the gateway does not fetch from: allow it with outbound.allowed_networks (e.g. ["10.20.0.5"])`,
      `${FILE}:15:20 routes[0].upstream.auth.token_url: fd00::1 is a loopback, private or link-local address, which the gateway does not fetch from: allow it with outbound.allowed_networks (e.g. ["fd00::1"])`,
      `${FILE}:23:20 routes[1].upstream.auth.token_url: 169.254.169.254 is a loopback, private or link-local address, which the gateway does not fetch from: allow it with outbound.allowed_networks (e.g. ["169.254.169.254"])`,
    ]);
    const allowed = parseConfig(
      `${text}outbound: {allowed_networks: ["10.20.0.0/16", "fd00::/8", "169.254.169.254"]}\n`,
      FILE,
      {},
    );
    expect(allowed.outbound.allowed_networks).toHaveLength(3);
    expect(() =>
      parseConfig(`${text}outbound: {allow_private_addresses: true}\n`, FILE, {}),
    ).not.toThrow();
    expect(problems(`${BASE}outbound: {allowed_networks: [10.0.0.0/33, example.com]}\n`)).toEqual([
      expect.stringContaining("outbound.allowed_networks[0]: must be an IP address or CIDR range"),
      expect.stringContaining("outbound.allowed_networks[1]: must be an IP address or CIDR range"),
    ]);
  });

  it("applies the defaults of the contract", () => {
    const config = parseConfig(BASE, FILE, {});
    expect(config.listen).toEqual({ host: "127.0.0.1", port: 8080 });
    expect(config.upstream?.timeout).toBe(60_000);
    expect(config.limits).toEqual({
      max_body_bytes: 4 * 1024 * 1024,
      max_header_bytes: 16 * 1024,
      headers_timeout: 10_000,
      request_timeout: 30_000,
      jwks_fetch_timeout: 5_000,
    });
    expect(config.auth.oauth).toEqual({
      enabled: false,
      required_scopes: [],
      jwks_cache_ttl: 300_000,
      leeway: 30_000,
      metadata_path: "/.well-known/oauth-protected-resource",
    });
    expect(config.cors.allowed_origins).toEqual([]);
    expect(config.auth.enabled).toBe(true);
    expect(config.auth.keys[0]?.scopes).toEqual(["*"]);
    expect(config.shutdown_timeout).toBe(10_000);
    expect(config.log.level).toBe("info");
    // Relative audit paths are resolved against the config file's folder.
    expect(config.audit.path).toBe("/etc/mcpgw/audit.jsonl");
  });

  it("refuses the authorization server on redis without a url, naming the key", () => {
    const server = `
authorization_server:
  enabled: true
  issuer: "https://gw.example.com"
  store: {type: redis}
`;
    expect(problems(BASE + server).join("\n")).toMatch(
      /authorization_server\.store\.type.*redis needs a url: set authorization_server\.store\.url, or store: \{type: redis, url\}/,
    );
    const shared = parseConfig(
      `${BASE + server}store: {type: redis, url: "redis://127.0.0.1:6379"}\n`,
      FILE,
      {},
    );
    expect(shared.authorization_server.store).toEqual({ type: "redis" });
  });

  it("refuses with several workers what lives in one process's memory, unless on Redis", () => {
    const stdio = `${BASE.replace(/upstream:\n {2}url: .*\n/, "")}workers: 2\nupstream: {command: [node, server.js]}\n`;
    expect(problems(stdio).join("\n")).toMatch(
      /workers: upstream is a stdio server, whose sessions live in one process: run it with workers: 1/,
    );
    const server = `${BASE}workers: auto
authorization_server:
  enabled: true
  issuer: "https://gw.example.com"
`;
    expect(problems(server).join("\n")).toMatch(
      /workers: the authorization server keeps revocations and sign-ins in progress in one process/,
    );
    const shared = parseConfig(
      `${server}store: {type: redis, url: "redis://127.0.0.1:6379"}\n`,
      FILE,
      {},
    );
    expect(shared.workers).toBe("auto");
    expect(parseConfig(BASE, FILE, {}).workers).toBe(1);
  });

  it("accepts a hash without its leading $ (YAML users often lose it)", () => {
    const config = parseConfig(BASE.replace(`"${HASH}"`, `"${HASH.slice(1)}"`), FILE, {});
    expect(config.auth.keys[0]?.hash).toBe(HASH);
  });

  it("expands ${ENV} inside strings and keeps $$ as a literal $", () => {
    const text = BASE.replace(
      "http://127.0.0.1:3001/mcp",
      () => "http://${UPSTREAM_HOST}/mcp?x=$${y}",
    );
    const config = parseConfig(text, FILE, { UPSTREAM_HOST: "10.1.2.3:9000" });
    expect(config.upstream?.url).toBe("http://10.1.2.3:9000/mcp?x=${y}");
  });

  it("reports every problem as FILE:LINE:COL key.path: message", () => {
    const text = `${BASE}limits:\n  max_body_bytes: lots\n  headers_timeout: 10\nextra: true\n`;
    expect(problems(text)).toEqual([
      `${FILE}:10:19 limits.max_body_bytes: invalid size "lots": use a positive number of bytes or a unit (KiB, MiB, KB, MB), like 4MiB`,
      `${FILE}:11:20 limits.headers_timeout: expected a duration with a unit, like "30s" or "5m", got the number 10: write "10s" for seconds`,
      `${FILE}:12:1 extra: unknown key`,
    ]);
  });

  it("says what a HOST:PORT key wants when given a bare port", () => {
    const [problem] = problems(`listen: 8085\n${BASE}`);
    expect(problem).toBe(
      `${FILE}:1:9 listen: expected an address "HOST:PORT", like "127.0.0.1:8080" or ":8080" for every interface, got the number 8085: write "127.0.0.1:8085" (this host only) or ":8085" (every interface)`,
    );
  });

  it("suggests the known key nearest to a misspelt one, and none for a stranger", () => {
    const text = `${BASE}limits:\n  max_body_byte: 4MiB\n  headers_timout: 10s\nauidt: {}\nzebra: 1\n`;
    expect(problems(text)).toEqual([
      `${FILE}:10:3 limits.max_body_byte: unknown key (did you mean "max_body_bytes"?)`,
      `${FILE}:11:3 limits.headers_timout: unknown key (did you mean "headers_timeout"?)`,
      `${FILE}:12:1 auidt: unknown key (did you mean "audit"?)`,
      `${FILE}:13:1 zebra: unknown key`,
    ]);
  });

  it("points an unclosed flow collection or quote at its opening token, not the next line", () => {
    const unclosedList = `upstream:\n  url: http://127.0.0.1:3001/mcp\n  x: 1\n  timeout: [30s\naudit:\n  path: a\n`;
    expect(problems(unclosedList)[0]).toMatch(
      new RegExp(`^${FILE}:4:12 upstream\\.timeout: Flow sequence`),
    );
    const unclosedQuote = `${BASE}log:\n  level: "info\nshutdown_timeout: 5s\n`;
    expect(problems(unclosedQuote)[0]).toMatch(
      new RegExp(`^${FILE}:10:10 log\\.level: Missing closing`),
    );
  });

  it("points a missing required key at its parent", () => {
    expect(problems("upstream: {}\naudit: {path: a}\nauth: {enabled: false}\n")).toEqual([
      `${FILE}:1:11 upstream: needs one of url (an HTTP MCP server), targets (a pool) or command (a stdio server)`,
    ]);
  });

  it("names the key around a YAML syntax error", () => {
    const [problem] = problems(`${BASE}log:\n  level: "info\n`);
    expect(problem).toMatch(new RegExp(`^${FILE}:\\d+:\\d+ log\\.level: Missing closing`));
  });

  it("refuses duplicate keys, duplicate key ids, bad hashes and bad URLs", () => {
    expect(problems(`${BASE}audit:\n  path: b\n`)[0]).toContain("Map keys must be unique");
    const twice = BASE.replace(
      "auth:\n  keys:\n",
      `auth:\n  keys:\n    - id: ci\n      hash: "${HASH}"\n`,
    );
    expect(problems(twice)).toEqual([`${FILE}:7:11 auth.keys[1].id: duplicate key id "ci"`]);
    expect(problems(BASE.replace(`"${HASH}"`, "plaintext"))[0]).toContain(
      "auth.keys[0].hash: must be an argon2id PHC hash",
    );
    expect(problems(BASE.replace("http://127.0.0.1:3001/mcp", "ftp://x"))[0]).toContain(
      "upstream.url: must be an absolute http:// or https:// URL",
    );
  });

  it("refuses an unset environment variable with its position", () => {
    expect(problems(BASE.replace("http://127.0.0.1:3001/mcp", "${NOT_SET}"))).toEqual([
      `${FILE}:2:8 upstream.url: environment variable NOT_SET is not set`,
    ]);
  });
});

describe("parseListen", () => {
  it("reads IPv4, IPv6 and wildcard forms", () => {
    expect(parseListen("127.0.0.1:8080")).toEqual({ host: "127.0.0.1", port: 8080 });
    expect(parseListen("[::1]:0")).toEqual({ host: "::1", port: 0 });
    expect(parseListen(":9000")).toEqual({ host: "0.0.0.0", port: 9000 });
    expect(parseListen("localhost")).toMatch(/use HOST:PORT/);
    expect(parseListen("1.2.3.4:70000")).toMatch(/invalid port/);
  });
});

describe("diffConfig", () => {
  it("lists changed key paths and the ones that need a restart", () => {
    const before = parseConfig(BASE, FILE, {});
    const after = parseConfig(`${BASE.replace("3001", "3002")}listen: "0.0.0.0:9090"\n`, FILE, {});
    expect(diffConfig(before, after)).toEqual({
      changed: ["listen.host", "listen.port", "upstream.url"],
      restartRequired: ["listen"],
    });
    expect(diffConfig(before, parseConfig(BASE, FILE, {}))).toEqual({
      changed: [],
      restartRequired: [],
    });
  });
});
