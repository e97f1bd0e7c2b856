/**
 * A generation is everything the request path needs, built from one config: authenticator,
 * upstream pool, limits. It is immutable; a reload builds a complete new one and swaps a single
 * reference. Requests retain the generation they started on, so an old generation is closed
 * only after its last request finished.
 */
import { KeyStore } from "../auth/api-keys.js";
import { type Authenticator, BearerAuthenticator, unauthenticated } from "../auth/authenticate.js";
import { type Config, DEFAULT_MCP_PATH } from "../config/schema.js";
import { Upstream } from "../http/proxy.js";
import type { Logger } from "../log.js";

export interface GenerationDeps {
  log: Logger;
}

export class Generation {
  readonly id: number;
  readonly config: Config;
  readonly authenticator: Authenticator;
  readonly upstream: Upstream;
  readonly mcpPath: string;
  #inFlight = 0;
  #retired = false;
  #closed: Promise<void> | undefined;

  private constructor(
    id: number,
    config: Config,
    authenticator: Authenticator,
    upstream: Upstream,
  ) {
    this.id = id;
    this.config = config;
    this.authenticator = authenticator;
    this.upstream = upstream;
    this.mcpPath = DEFAULT_MCP_PATH;
  }

  /** Provisions a generation; throws (and leaks nothing) when the config cannot be used. */
  static build(id: number, config: Config, { log }: GenerationDeps): Generation {
    let authenticator = unauthenticated;
    if (config.auth.enabled) {
      const keys = new KeyStore(config.auth.keys, {
        onArgon2Run: ({ keyId, matched }) =>
          log.debug(
            { key_id: keyId, result: matched ? "match" : "no_match", generation: id },
            "argon2 verification",
          ),
      });
      authenticator = new BearerAuthenticator({ keys });
    }
    return new Generation(id, config, authenticator, new Upstream(config.upstream));
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  retain(): void {
    this.#inFlight++;
  }

  release(): void {
    this.#inFlight--;
    if (this.#retired && this.#inFlight === 0) void this.close();
  }

  /** Marks the generation replaced; it closes once its last request has finished. */
  retire(): void {
    this.#retired = true;
    if (this.#inFlight === 0) void this.close();
  }

  close(): Promise<void> {
    this.#closed ??= this.upstream.close();
    return this.#closed;
  }
}
