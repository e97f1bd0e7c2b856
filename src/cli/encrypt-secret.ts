import { existsSync } from "node:fs";
import { loadConfigFile } from "../config/load.js";
import { ConfigError, EXIT } from "../errors.js";
import { SecretBox, SecretError } from "../secrets/cipher.js";

/**
 * `mcpgw encrypt-secret`: one secret on stdin (a trailing newline is not part of it) -> an
 * `enc:v1:` value to put in the config instead of it. The key: the config's
 * `secrets.encryption_key` when `--config` names a file, else `$AUTH_ENCRYPTION_SECRET`, else
 * the default config file's.
 */
export async function encryptSecret(
  configFile: string | undefined,
  defaultConfigFile: string,
  input: NodeJS.ReadableStream,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<number> {
  let box: SecretBox;
  try {
    const fromEnv = process.env.AUTH_ENCRYPTION_SECRET;
    const file =
      configFile ??
      (fromEnv ? undefined : existsSync(defaultConfigFile) ? defaultConfigFile : undefined);
    const key = file ? (await loadConfigFile(file)).config.secrets.encryption_key : fromEnv;
    if (!key) {
      err.write(
        `encrypt-secret: no key: set secrets.encryption_key in ${file ?? "the config (--config FILE)"} or $AUTH_ENCRYPTION_SECRET\n`,
      );
      return EXIT.config;
    }
    box = new SecretBox(key);
  } catch (error) {
    if (error instanceof ConfigError) {
      err.write(`${error.problems.join("\n")}\n`);
      return EXIT.config;
    }
    if (error instanceof SecretError) {
      err.write(`encrypt-secret: ${error.message}\n`);
      return EXIT.config;
    }
    throw error;
  }
  const chunks: Buffer[] = [];
  for await (const chunk of input) chunks.push(Buffer.from(chunk));
  const secret = Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
  if (secret === "") {
    err.write(
      'encrypt-secret: no secret on stdin (usage: printf %s "$SECRET" | mcpgw encrypt-secret)\n',
    );
    return EXIT.usage;
  }
  out.write(`${box.seal(secret)}\n`);
  return EXIT.ok;
}
