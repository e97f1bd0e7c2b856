import { loadConfigFile } from "../config/load.js";
import { ConfigError, EXIT } from "../errors.js";
import { createLogger } from "../log.js";
import { Policy } from "../policy/policy.js";
import { Generation } from "../runtime/generation.js";
import { preflight } from "../runtime/preflight.js";
import { type RouteSpec, routeSpecs } from "../runtime/routes.js";

/**
 * `mcpgw check-config`: the same load, checks (preflight: the audit file can be opened, no
 * demo key) and provisioning as `run`, without listening or creating files (as `caddy
 * validate` does), so a config that passes here also starts. Run it as the service's user:
 * file permissions are checked for the user running it.
 */
export async function checkConfig(
  configFile: string,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<number> {
  try {
    const loaded = await loadConfigFile(configFile);
    const { config } = loaded;
    await preflight(loaded);
    // The JWKS is not fetched: a config can be checked where the IdP is not reachable.
    const generation = await Generation.build(0, config, {
      log: createLogger("silent"),
      prime: false,
    });
    await generation.close();
    out.write(`${configFile}: ok\n`);
    for (const spec of routeSpecs(config)) out.write(`  route ${spec.path} -> ${describe(spec)}\n`);
    if (config.policy) {
      for (const { rule, shadowedBy } of new Policy(config.policy).unreachable()) {
        out.write(
          `  warning: policy rule ${rule} is unreachable: rule ${shadowedBy} before it matches every request it does\n`,
        );
      }
    }
    const limits = config.rate_limits ?? [];
    if (limits.length > 0) {
      const { store } = config;
      const where = store.type === "redis" ? `in redis at ${redisAddress(store.url)}` : "in memory";
      out.write(`  rate limits ${limits.map((limit) => limit.id).join(", ")}: buckets ${where}\n`);
    }
    if (generation.authorizationServer) {
      out.write(`  authorization server ${generation.authorizationServer.issuer}/oauth/\n`);
    }
    return EXIT.ok;
  } catch (error) {
    if (error instanceof ConfigError) {
      err.write(`${error.problems.join("\n")}\n`);
      return EXIT.config;
    }
    err.write(`${configFile}: ${(error as Error).message}\n`);
    return EXIT.config;
  }
}

/** What a route forwards to, for the operator: a URL, a pool's targets, a stdio program. */
function describe({ upstream }: RouteSpec): string {
  if (upstream.targets) return `pool of ${upstream.targets.join(", ")}`;
  // Only the program: the rest of a command line may carry secrets.
  if (upstream.command) return `stdio ${upstream.command[0]}`;
  return upstream.url as string;
}

/** host:port of a Redis URL, without its credentials. */
function redisAddress(url: string): string {
  const parsed = new URL(url);
  return `${parsed.hostname}:${parsed.port || "6379"}`;
}
