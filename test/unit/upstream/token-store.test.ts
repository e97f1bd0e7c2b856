import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { sqliteAvailable } from "../../../src/authorization-server/store.js";
import { SecretBox } from "../../../src/secrets/cipher.js";
import { TOKEN_FILE, TokenStore } from "../../../src/upstream/token-store.js";

const KEY = "token-store-key-0123456789-abcdefghijk";
const OTHER = "another-token-store-key-0123456789-abcd";
const TOKEN = { accessToken: "access-plaintext-0001", refreshToken: "refresh-plaintext-0001" };

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "mcpgw-tokens-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("TokenStore", () => {
  it("keeps tokens sealed in its file across a restart, and names a key it cannot open them with", async () => {
    const store = new TokenStore(dir, new SecretBox(KEY));
    await store.put("/crm/mcp", "key:alice", TOKEN);
    expect(store.get("/crm/mcp", "key:alice")).toEqual(TOKEN);
    store.close();
    const file = path.join(dir, TOKEN_FILE);
    if (!sqliteAvailable()) {
      // No node:sqlite (Node 20): memory only, nothing on disk.
      expect(existsSync(file)).toBe(false);
      return;
    }
    const bytes = (await readFile(file)).toString("latin1");
    expect(bytes).not.toContain("plaintext");
    const reopened = new TokenStore(dir, new SecretBox(OTHER, [KEY]));
    expect(reopened.get("/crm/mcp", "key:alice")).toEqual(TOKEN);
    await reopened.put("/crm/mcp", "key:alice", undefined);
    await reopened.put("/crm/mcp", "key:bob", TOKEN);
    reopened.close();
    expect(() => new TokenStore(dir, new SecretBox(KEY))).toThrow(
      /upstream-tokens\.sqlite: a stored upstream token does not open: sealed under key \S{8}, which is neither/,
    );
  });
});
