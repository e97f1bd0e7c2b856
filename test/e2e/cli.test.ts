import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { verify } from "@node-rs/argon2";
import { beforeAll, describe, expect, it } from "vitest";
import { looksLikeJWT } from "../../src/auth/token-shape.js";
import { runBin } from "../helpers/bin.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "mcpgw-cli-"));
});

async function configFile(name: string, text: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, text);
  return file;
}

const VALID = `listen: "127.0.0.1:0"
upstream:
  url: http://127.0.0.1:3001/mcp
auth:
  enabled: false
audit:
  path: audit.jsonl
`;

describe("mcpgw check-config", () => {
  it("exits 0 for a valid file", async () => {
    const ok = await runBin(["check-config", "--config", await configFile("ok.yaml", VALID)]);
    expect(ok).toMatchObject({ code: 0 });
    expect(ok.stdout).toContain("ok");
  });

  it("warns about policy rules that can never match, and explain names the deciding rule", async () => {
    const file = await configFile(
      "policy.yaml",
      `${VALID}policy:
  default: allow
  rules:
    - {id: deny-deletes, match: {method: tools/call, tool: "delete_*"}, effect: deny}
    - {id: admins-delete-repos, match: {method: tools/call, tool: delete_repo}, require_scopes: [mcp:admin]}
`,
    );
    const checked = await runBin(["check-config", "--config", file]);
    expect(checked.code).toBe(0);
    expect(checked.stdout).toContain(
      "warning: policy rule admins-delete-repos is unreachable: rule deny-deletes before it matches every request it does",
    );
    const explained = await runBin([
      "explain",
      "--config",
      file,
      "--key-id",
      "ci",
      "--method",
      "tools/call",
      "--tool",
      "delete_repo",
    ]);
    expect(explained).toMatchObject({ code: 0, stdout: "deny: rule deny-deletes\n" });
  });

  it("names the rate limits and where their buckets are, without connecting or showing a password", async () => {
    const file = await configFile(
      "limits.yaml",
      `${VALID}rate_limits:
  - {id: per-client, key: principal, rate: 100/s}
  - {id: all, key: global, rate: 1000/s}
store: {type: redis, url: "redis://:s3cret-password@127.0.0.1:1/0"}
`,
    );
    const checked = await runBin(["check-config", "--config", file]);
    expect(checked.code).toBe(0);
    expect(checked.stdout).toContain(
      "rate limits per-client, all: buckets in redis at 127.0.0.1:1",
    );
    expect(checked.stdout + checked.stderr).not.toContain("s3cret-password");
    const bad = await configFile(
      "bad-store.yaml",
      `${VALID}store: {type: redis, url: "http://127.0.0.1:6379"}\n`,
    );
    const refused = await runBin(["check-config", "--config", bad]);
    expect(refused.code).toBe(78);
    expect(refused.stderr).toContain("store.url");
    expect(refused.stderr).toContain("must be a redis:// or rediss:// URL");
  });

  it("reads $MCPGW_CONFIG when --config is not given", async () => {
    const file = await configFile("env.yaml", VALID);
    const { spawnBin } = await import("../helpers/bin.js");
    const running = spawnBin(["check-config"], { MCPGW_CONFIG: file });
    running.child.stdin?.end();
    expect(await running.exited).toBe(0);
  });

  it("names file, line, column and key of malformed YAML (exit 78)", async () => {
    const file = await configFile("malformed.yaml", `${VALID}limits:\n  max_body_bytes: [1, 2\n`);
    const { code, stderr } = await runBin(["check-config", "--config", file]);
    expect(code).toBe(78);
    expect(stderr).toMatch(
      new RegExp(`^${escapeRegExp(file)}:\\d+:\\d+ limits\\.max_body_bytes.*: `, "m"),
    );
  });

  it("reports an unknown key with its path and position", async () => {
    const file = await configFile("unknown.yaml", VALID.replace("  url:", "  ur1: x\n  url:"));
    const { code, stderr } = await runBin(["check-config", "--config", file]);
    expect(code).toBe(78);
    expect(stderr).toContain(`${file}:3:3 upstream.ur1: unknown key`);
  });

  it("reports a bad duration and a wrong type together", async () => {
    const file = await configFile(
      "types.yaml",
      `${VALID}shutdown_timeout: 10 seconds\nreload:\n  watch: "yes"\n`,
    );
    const { code, stderr } = await runBin(["check-config", "--config", file]);
    expect(code).toBe(78);
    expect(stderr).toContain(`${file}:8:19 shutdown_timeout: invalid duration "10 seconds"`);
    expect(stderr).toMatch(new RegExp(`${escapeRegExp(file)}:10:10 reload\\.watch: .*boolean`));
  });

  it("refuses auth without any key, and says how to fix it", async () => {
    const file = await configFile("nokeys.yaml", VALID.replace("  enabled: false", "  keys: []"));
    const { code, stderr } = await runBin(["check-config", "--config", file]);
    expect(code).toBe(78);
    expect(stderr).toContain(
      "auth.keys: auth is enabled but neither API keys nor auth.oauth are configured",
    );
    expect(stderr).toContain("mcpgw gen-key");
  });

  it("reports an unset ${ENV} variable and a missing file", async () => {
    const file = await configFile(
      "env-missing.yaml",
      VALID.replace("http://127.0.0.1:3001/mcp", "${MCPGW_TEST_UNSET}"),
    );
    const unset = await runBin(["check-config", "--config", file]);
    expect(unset.code).toBe(78);
    expect(unset.stderr).toContain(
      "upstream.url: environment variable MCPGW_TEST_UNSET is not set",
    );
    const missing = await runBin(["check-config", "--config", path.join(dir, "nope.yaml")]);
    expect(missing.code).toBe(78);
    expect(missing.stderr).toContain("no such file");
  });
});

describe("key commands", () => {
  it("encrypt-secret seals the secret on stdin, which the config then opens, and only with its key", async () => {
    const key = "e2e-encryption-key-0123456789-abcdefghij";
    const sealed = await runBin(["encrypt-secret"], "upstream-s3cret\n", {
      AUTH_ENCRYPTION_SECRET: key,
    });
    expect(sealed.code).toBe(0);
    expect(sealed.stdout).toMatch(/^enc:v1:[A-Za-z0-9_-]{8}:[A-Za-z0-9_-]+\n$/);
    expect(sealed.stdout).not.toContain("upstream-s3cret");
    const file = await configFile(
      "sealed.yaml",
      VALID.replace(
        "  url: http://127.0.0.1:3001/mcp\n",
        `  url: http://127.0.0.1:3001/mcp
  auth: {type: client_credentials, token_url: "https://idp.example.test/token", client_id: gw, client_secret: "${sealed.stdout.trim()}"}
`,
      ),
    );
    const opened = await runBin(["check-config", "--config", file], "", {
      AUTH_ENCRYPTION_SECRET: key,
    });
    expect(opened.code).toBe(0);
    const wrong = await runBin(["check-config", "--config", file], "", {
      AUTH_ENCRYPTION_SECRET: "another-key-0123456789-abcdefghijklmn",
    });
    expect(wrong.code).toBe(78);
    expect(wrong.stderr).toMatch(
      /sealed\.yaml:4:\d+ upstream\.auth\.client_secret: sealed under key/,
    );
    expect(wrong.stderr).not.toContain("upstream-s3cret");
    const noKey = await runBin(["encrypt-secret", "--config", file], "x", {
      AUTH_ENCRYPTION_SECRET: "",
    });
    expect(noKey.code).toBe(78);
    expect(noKey.stderr).toContain("an enc:v1 value needs secrets.encryption_key");
  });

  it("hash-key prints an argon2id hash of the key on stdin", async () => {
    const { code, stdout } = await runBin(["hash-key"], "s3cret-key\n");
    expect(code).toBe(0);
    const hash = stdout.trim();
    expect(hash).toMatch(/^\$argon2id\$v=19\$m=65536,t=3,p=4\$/);
    expect(await verify(hash, "s3cret-key")).toBe(true);
  });

  it("hash-key refuses an empty stdin with a usage error", async () => {
    const { code, stderr } = await runBin(["hash-key"], "");
    expect(code).toBe(64);
    expect(stderr).toContain("no key on stdin");
  });

  it("gen-key prints a key once and an entry whose hash verifies it", async () => {
    const { code, stdout } = await runBin(["gen-key", "--id", "ci-bot"]);
    expect(code).toBe(0);
    const key = /shown once.*: (mcpgw_\S+)/.exec(stdout)?.[1] as string;
    const hash = /hash: "([^"]+)"/.exec(stdout)?.[1] as string;
    expect(stdout).toContain("- id: ci-bot");
    expect(looksLikeJWT(key)).toBe(false);
    expect(await verify(hash, key)).toBe(true);
  });
});

describe("mcpgw --version, --help and usage errors", () => {
  it("prints the version and help with exit 0, and exits 64 on an unknown command", async () => {
    const version = await runBin(["--version"]);
    expect(version.code).toBe(0);
    expect(version.stdout).toMatch(/^mcpgw \d+\.\d+\.\d+/);
    const help = await runBin(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("check-config");
    const unknown = await runBin(["frobnicate"]);
    expect(unknown.code).toBe(64);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
