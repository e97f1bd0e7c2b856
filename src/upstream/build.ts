/** A route's upstream from its config: one HTTP server, a pool of targets, or a stdio command. */
import type { UpstreamConfig } from "../config/schema.js";
import type { Logger } from "../log.js";
import { HttpUpstream } from "./http.js";
import { PoolUpstream } from "./pool.js";
import type { SessionSealer } from "./session-seal.js";
import { StdioUpstream } from "./stdio.js";
import type { Upstream } from "./upstream.js";

export interface UpstreamDeps {
  log: Logger;
  /** Seals the session ids of pool routes (`sessions.key`, else a key of the process's own). */
  sealer: SessionSealer;
}

/** stdio defaults (the schema leaves them unset, since they apply to one kind only). */
export const STDIO_MAX_SESSIONS = 32;
export const STDIO_IDLE_TIMEOUT_MS = 10 * 60_000;

export function buildUpstream(route: string, config: UpstreamConfig, deps: UpstreamDeps): Upstream {
  if (config.command !== undefined) {
    return new StdioUpstream(
      {
        command: config.command,
        env: config.env ?? {},
        ...(config.cwd !== undefined && { cwd: config.cwd }),
        maxSessions: config.max_sessions ?? STDIO_MAX_SESSIONS,
        idleTimeoutMs: config.idle_timeout ?? STDIO_IDLE_TIMEOUT_MS,
      },
      { log: deps.log, route },
    );
  }
  if (config.targets !== undefined) {
    const check = config.health_check ?? { interval: 10_000, timeout: 2_000 };
    return new PoolUpstream(
      {
        targets: config.targets,
        timeout: config.timeout,
        healthCheck: { intervalMs: check.interval, timeoutMs: check.timeout },
      },
      { log: deps.log, route, sealer: deps.sealer },
    );
  }
  return new HttpUpstream({ url: config.url as string, timeout: config.timeout });
}
