import { describe, expect, it } from "vitest";
import { parseConfig } from "../../../src/config/load.js";
import { ConfigError } from "../../../src/errors.js";
import { SecretBox } from "../../../src/secrets/cipher.js";

const KEY = "first-encryption-key-0123456789abcdef";
const NEXT = "second-encryption-key-0123456789abcdef";

describe("SecretBox", () => {
  it("seals with a fresh IV each time and opens what it sealed", () => {
    const box = new SecretBox(KEY);
    const one = box.seal("client-secret");
    const two = box.seal("client-secret");
    expect(one).toMatch(/^enc:v1:[A-Za-z0-9_-]{8}:[A-Za-z0-9_-]+$/);
    expect(one).not.toBe(two);
    expect(one).not.toContain("client-secret");
    expect(box.openText(one)).toBe("client-secret");
  });

  it("opens values sealed under a previous key after a rotation, and says which to re-seal", () => {
    const old = new SecretBox(KEY).seal("kept");
    const rotated = new SecretBox(NEXT, [KEY]);
    expect(rotated.openText(old)).toBe("kept");
    expect(rotated.isStale(old)).toBe(true);
    expect(rotated.isStale(rotated.seal("new"))).toBe(false);
  });

  it("names a key it does not have, and refuses an altered value", () => {
    const sealed = new SecretBox(KEY).seal("secret");
    expect(() => new SecretBox(NEXT).open(sealed)).toThrow(
      /sealed under key \S{8}, which is neither/,
    );
    const last = sealed.at(-2) === "A" ? "B" : "A";
    const altered = `${sealed.slice(0, -2)}${last}${sealed.at(-1)}`;
    expect(() => new SecretBox(KEY).open(altered)).toThrow(/does not open: altered or truncated/);
  });

  it("refuses a key shorter than 32 characters", () => {
    expect(() => new SecretBox("short")).toThrow(/at least 32 characters/);
  });
});

describe("enc:v1 values in the config", () => {
  const config = (secret: string, secrets = `secrets:\n  encryption_key: "\${KEY}"\n`) =>
    `listen: "127.0.0.1:0"\naudit:\n  path: audit.jsonl\nupstream:\n  url: http://127.0.0.1:3001/mcp\n  auth:\n    type: client_credentials\n    token_url: https://idp.example.test/token\n    client_id: gw\n    client_secret: "${secret}"\nauth:\n  enabled: false\n${secrets}`;

  it("are opened with secrets.encryption_key, or $AUTH_ENCRYPTION_SECRET", () => {
    const sealed = new SecretBox(KEY).seal("the-client-secret");
    const parsed = parseConfig(config(sealed), "mcpgw.yaml", { KEY });
    expect(parsed.upstream?.auth).toMatchObject({ client_secret: "the-client-secret" });
    const fromEnv = parseConfig(config(sealed, ""), "mcpgw.yaml", { AUTH_ENCRYPTION_SECRET: KEY });
    expect(fromEnv.upstream?.auth).toMatchObject({ client_secret: "the-client-secret" });
  });

  it("that do not open are errors at their line, and the value is never shown", () => {
    const sealed = new SecretBox(KEY).seal("the-client-secret");
    const problems = (text: string, env: NodeJS.ProcessEnv) => {
      try {
        parseConfig(text, "mcpgw.yaml", env);
      } catch (error) {
        return (error as ConfigError).problems;
      }
      throw new Error("parsed");
    };
    expect(problems(config(sealed), { KEY: NEXT })).toEqual([
      expect.stringMatching(
        /^mcpgw\.yaml:10:20 upstream\.auth\.client_secret: sealed under key \S{8}, which is neither secrets\.encryption_key/,
      ),
    ]);
    expect(problems(config(sealed, ""), {})).toEqual([
      "mcpgw.yaml:10:20 upstream.auth.client_secret: an enc:v1 value needs secrets.encryption_key in the config or $AUTH_ENCRYPTION_SECRET",
    ]);
    expect(problems(config(sealed), { KEY: NEXT }).join("\n")).not.toContain(sealed.slice(16));
    expect(() => parseConfig(config(sealed), "mcpgw.yaml", { KEY: NEXT })).toThrow(ConfigError);
  });
});
