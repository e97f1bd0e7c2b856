import { randomBytes } from "node:crypto";
import { hashApiKey } from "../auth/api-keys.js";
import { KEY_ID } from "../config/schema.js";
import { EXIT } from "../errors.js";

/**
 * `mcpgw hash-key` (and `hash-password`, for the authorization server's users): one secret on
 * stdin (a trailing newline is not part of it) -> its argon2id hash.
 */
export async function hashKey(
  input: NodeJS.ReadableStream,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
  what: "key" | "password" = "key",
): Promise<number> {
  const chunks: Buffer[] = [];
  for await (const chunk of input) chunks.push(Buffer.from(chunk));
  const key = Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
  if (key === "") {
    const variable = what === "key" ? "KEY" : "PASSWORD";
    err.write(
      `hash-${what}: no ${what} on stdin (usage: printf %s "$${variable}" | mcpgw hash-${what})\n`,
    );
    return EXIT.usage;
  }
  out.write(`${await hashApiKey(key)}\n`);
  return EXIT.ok;
}

export const KEY_ID_RULE = "a key id is 1-64 characters of A-Z a-z 0-9 . _ : @ -";

export function isKeyId(id: string): boolean {
  return KEY_ID.test(id);
}

/**
 * `mcpgw gen-key`: a new random key, shown once, and the config entry that stores its hash,
 * indented to be pasted under `auth.keys:` as the example config lays it out.
 * 32 random bytes in base64url, behind a prefix that secret scanners can match; no dots, so
 * the key can never look like a JWT (contract: Authentication, looksLikeJWT).
 */
export async function genKey(id: string, out: NodeJS.WritableStream): Promise<number> {
  const key = `mcpgw_${randomBytes(32).toString("base64url")}`;
  const hash = await hashApiKey(key);
  out.write(
    [
      `# API key (shown once; store it in your secret manager): ${key}`,
      "# Paste these lines under `  keys:` in the auth section of mcpgw.yaml, then reload",
      "# (systemctl reload mcpgw, or kill -HUP):",
      `    - id: ${id}`,
      `      hash: "${hash}"`,
      `      scopes: ["*"]`,
      "",
    ].join("\n"),
  );
  return EXIT.ok;
}

/**
 * `mcpgw gen-key --session`: a `sessions.key`, which seals the session ids of pool routes.
 * Every replica that should continue the others' sessions gets the same one.
 */
export function genSessionKey(out: NodeJS.WritableStream): number {
  const key = randomBytes(32).toString("base64");
  out.write(
    [
      "# sessions.key (keep it secret; give every replica the same one):",
      "sessions:",
      `  key: "${key}"`,
      "",
    ].join("\n"),
  );
  return EXIT.ok;
}
