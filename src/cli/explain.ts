/**
 * `mcpgw explain`: which policy rule decides a request, and why, without sending one.
 * `mcpgw explain --config F --key-id ci --method tools/call --tool delete_repo`
 */
import type { Principal } from "../auth/principal.js";
import { loadConfigFile } from "../config/load.js";
import { ConfigError, EXIT } from "../errors.js";
import { missingScopes, Policy } from "../policy/policy.js";
import { routeSpecs } from "../runtime/routes.js";

export interface ExplainRequest {
  route?: string | undefined;
  method?: string | undefined;
  tool?: string | undefined;
  prompt?: string | undefined;
  resource?: string | undefined;
  keyId?: string | undefined;
  oauthClientId?: string | undefined;
  sub?: string | undefined;
  scopes: readonly string[];
}

export async function explain(
  configFile: string,
  request: ExplainRequest,
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<number> {
  if (request.method === undefined) {
    err.write("explain: --method is required (tools/call, tools/list, ...)\n");
    return EXIT.usage;
  }
  try {
    const { config } = await loadConfigFile(configFile);
    if (!config.policy) {
      out.write("no policy in the config: every authenticated request is allowed\n");
      return EXIT.ok;
    }
    const route = request.route ?? routeSpecs(config)[0]?.path ?? "/mcp";
    const principal: Principal = {
      type: request.keyId !== undefined ? "api_key" : "oauth",
      ...(request.keyId !== undefined && { keyId: request.keyId }),
      ...(request.oauthClientId !== undefined && { oauthClientId: request.oauthClientId }),
      ...(request.sub !== undefined && { sub: request.sub }),
      scopes: request.scopes,
      scope: request.scopes.join(" "),
    };
    const { rule, effect } = new Policy(config.policy).decide({
      route,
      method: request.method,
      tool: request.tool,
      prompt: request.prompt,
      resource: request.resource,
      principal,
    });
    const by = rule === "default" ? "the default" : `rule ${rule}`;
    if (effect.kind === "require_scopes") {
      const missing = missingScopes(effect.scopes, principal);
      out.write(
        missing.length === 0
          ? `allow: ${by} requires ${effect.scopes.join(" ")}, which the caller holds\n`
          : `deny (403 insufficient_scope): ${by} requires ${effect.scopes.join(" ")}; missing ${missing.join(" ")}\n`,
      );
    } else {
      out.write(`${effect.kind}: ${by}\n`);
    }
    return EXIT.ok;
  } catch (error) {
    if (error instanceof ConfigError) {
      err.write(`${error.problems.join("\n")}\n`);
      return EXIT.config;
    }
    err.write(`explain: ${(error as Error).message}\n`);
    return EXIT.fatal;
  }
}
