/**
 * `mcpgw rotate-signing-key`: the authorization server signs with a new key from the next
 * start on; the previous key stays in its JWKS, so tokens it signed stay valid until they expire.
 */
import { rotateSharedSigningKey, rotateSigningKey } from "../authorization-server/state.js";
import { loadConfigFile, secretBoxOf } from "../config/load.js";
import { authorizationServerOnRedis } from "../config/schema.js";
import { ConfigError, EXIT } from "../errors.js";
import { createLogger } from "../log.js";
import { authorizationServerRedis } from "../runtime/generation.js";
import { RedisStore } from "../store/redis.js";

export async function rotateKey(
  configFile: string,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<number> {
  try {
    const { config } = await loadConfigFile(configFile);
    const server = config.authorization_server;
    if (!server.enabled) {
      err.write(`${configFile}: authorization_server.enabled is false: no signing key to rotate\n`);
      return EXIT.config;
    }
    if (!authorizationServerOnRedis(config)) {
      const { kid, kept } = await rotateSigningKey(server.state_dir);
      out.write(
        [
          `new signing key ${kid} in ${server.state_dir}`,
          `kept for the tokens it signed: ${kept.join(", ") || "none"}`,
          "restart the gateway to sign with it (systemctl restart mcpgw)",
          "",
        ].join("\n"),
      );
      return EXIT.ok;
    }
    const box = secretBoxOf(config, process.env);
    if (box === undefined) {
      err.write(
        `${configFile}: the keys on the redis store are sealed: set secrets.encryption_key (or $AUTH_ENCRYPTION_SECRET)\n`,
      );
      return EXIT.config;
    }
    const settings = authorizationServerRedis(config) as Extract<
      typeof config.store,
      { type: "redis" }
    >;
    const redis = new RedisStore(
      {
        url: settings.url,
        keyPrefix: settings.key_prefix,
        timeout: Math.max(settings.timeout, 5_000),
      },
      createLogger("silent"),
    );
    try {
      await redis.connect();
      const { kid, kept } = await rotateSharedSigningKey(redis, box, server.state_dir);
      out.write(
        [
          `new signing key ${kid} on redis ${redis.where}`,
          `kept for the tokens it signed: ${kept.join(", ") || "none"}`,
          "restart every replica to sign with it (kubectl rollout restart, systemctl restart mcpgw)",
          "",
        ].join("\n"),
      );
      return EXIT.ok;
    } finally {
      await redis.close();
    }
  } catch (error) {
    if (error instanceof ConfigError) {
      err.write(`${error.problems.join("\n")}\n`);
      return EXIT.config;
    }
    err.write(`rotate-signing-key: ${(error as Error).message}\n`);
    return EXIT.fatal;
  }
}
