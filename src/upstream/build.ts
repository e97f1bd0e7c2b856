/** A route's upstream from its config: one HTTP server, a pool of targets, or a stdio command. */
import type { UpstreamConfig } from "../config/schema.js";
import type { Logger } from "../log.js";
import { HttpUpstream } from "./http.js";
import type { Upstream } from "./upstream.js";

export interface UpstreamDeps {
  log: Logger;
}

export function buildUpstream(path: string, config: UpstreamConfig, _deps: UpstreamDeps): Upstream {
  if (config.url !== undefined)
    return new HttpUpstream({ url: config.url, timeout: config.timeout });
  throw new Error(`route ${path}: this upstream kind is not available yet`);
}
