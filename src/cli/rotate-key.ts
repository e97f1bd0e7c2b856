/**
 * `mcpgw rotate-signing-key`: the authorization server signs with a new key from the next
 * start on; the previous key stays in its JWKS, so tokens it signed stay valid until they expire.
 */
import { rotateSigningKey } from "../authorization-server/state.js";
import { loadConfigFile } from "../config/load.js";
import { ConfigError, EXIT } from "../errors.js";

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
  } catch (error) {
    if (error instanceof ConfigError) {
      err.write(`${error.problems.join("\n")}\n`);
      return EXIT.config;
    }
    err.write(`rotate-signing-key: ${(error as Error).message}\n`);
    return EXIT.fatal;
  }
}
