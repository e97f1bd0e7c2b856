/**
 * A pool of HTTP targets serving the same MCP server. A new session (a request without
 * Mcp-Session-Id) goes to the least loaded healthy target; the session id the target answers
 * with is sealed (session-seal.ts) together with the target, so that every later request of the
 * session, on this gateway or any replica holding the same key, reaches the same target.
 */
import type { IncomingHttpHeaders } from "node:http";
import { Agent, request as httpRequest } from "undici";
import { GatewayError } from "../errors.js";
import type { Logger } from "../log.js";
import { HttpUpstream } from "./http.js";
import type { SessionSealer } from "./session-seal.js";
import type { ForwardRequest, Upstream, UpstreamStatus } from "./upstream.js";

export interface PoolUpstreamConfig {
  /** MCP endpoint URLs (http/https) of interchangeable servers. */
  targets: readonly string[];
  /** Milliseconds until response headers, per request (as HttpUpstream). */
  timeout: number;
  /** Every `intervalMs`, each target is asked for anything within `timeoutMs`. */
  healthCheck: { intervalMs: number; timeoutMs: number };
}

interface Target {
  readonly url: string;
  readonly upstream: HttpUpstream;
  healthy: boolean;
  inFlight: number;
  /** When the target was last found down (ms epoch); 0 while it never was. */
  failedAt: number;
}

export class PoolUpstream implements Upstream {
  readonly #targets: readonly Target[];
  readonly #byUrl: ReadonlyMap<string, Target>;
  readonly #log: Logger;
  readonly #route: string;
  readonly #sealer: SessionSealer;
  readonly #healthCheck: PoolUpstreamConfig["healthCheck"];
  /** Health checks have their own connections: a busy target's pool must not delay them. */
  readonly #checkAgent: Agent;
  readonly #timer: NodeJS.Timeout;
  /** Where the round robin between equally loaded targets goes on. */
  #next = 0;
  #checking = false;
  #closed = false;

  constructor(
    config: PoolUpstreamConfig,
    deps: { log: Logger; route: string; sealer: SessionSealer },
  ) {
    this.#targets = config.targets.map((url) => ({
      url,
      upstream: new HttpUpstream({ url, timeout: config.timeout }),
      // Healthy until a check says otherwise: the first requests need not wait for one.
      healthy: true,
      inFlight: 0,
      failedAt: 0,
    }));
    this.#byUrl = new Map(this.#targets.map((target) => [target.url, target]));
    this.#log = deps.log;
    this.#route = deps.route;
    this.#sealer = deps.sealer;
    this.#healthCheck = config.healthCheck;
    this.#checkAgent = new Agent({ connectTimeout: config.healthCheck.timeoutMs });
    this.#timer = setInterval(() => void this.#checkAll(), config.healthCheck.intervalMs).unref();
    void this.#checkAll();
  }

  forward(request: ForwardRequest): Promise<void> {
    const sealed = request.req.headers["mcp-session-id"];
    if (sealed === undefined) return this.#dispatch(this.#pick(), request, undefined);
    const opened = typeof sealed === "string" ? this.#sealer.open(this.#route, sealed) : undefined;
    const target = opened && this.#byUrl.get(opened.target);
    if (typeof sealed !== "string" || !opened || !target) {
      return Promise.reject(new GatewayError("session_not_found", "unknown session id"));
    }
    if (!target.healthy) {
      // The session lived on the server that is down; the client starts a new one elsewhere.
      return Promise.reject(
        new GatewayError("session_not_found", "the session's upstream server is down"),
      );
    }
    return this.#dispatch(target, request, { sealed, upstreamId: opened.upstreamSessionId });
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await Promise.all([
      this.#checkAgent.destroy(),
      ...this.#targets.map((target) => target.upstream.close()),
    ]);
  }

  status(): UpstreamStatus {
    return { targets: this.#targets.map(({ url, healthy }) => ({ url, healthy })) };
  }

  targetStates(): { url: string; healthy: boolean; inFlight: number }[] {
    return this.#targets.map(({ url, healthy, inFlight }) => ({ url, healthy, inFlight }));
  }

  /**
   * The healthy target with the fewest requests in flight, round robin among equals. With none
   * healthy, the one that failed longest ago: health may be stale, and refusing every request
   * would be worse than trying.
   */
  #pick(): Target {
    const count = this.#targets.length;
    let best: Target | undefined;
    let bestIndex = 0;
    for (let step = 0; step < count; step++) {
      const index = (this.#next + step) % count;
      const target = this.#targets[index] as Target;
      if (target.healthy && (!best || target.inFlight < best.inFlight)) {
        best = target;
        bestIndex = index;
      }
    }
    if (best) {
      this.#next = bestIndex + 1;
      return best;
    }
    return this.#targets.reduce((a, b) => (b.failedAt < a.failedAt ? b : a));
  }

  async #dispatch(
    target: Target,
    request: ForwardRequest,
    session: { sealed: string; upstreamId: string } | undefined,
  ): Promise<void> {
    const onResponse = (statusCode: number, headers: IncomingHttpHeaders): void => {
      // The client only ever sees the sealed id, and so does the caller's hook (it audits it).
      // A server that repeats the session's id gets the client's own sealed id back: a fresh
      // seal (new IV) on every response would change the id the client and the audit see.
      const id = headers["mcp-session-id"];
      if (typeof id === "string") {
        headers["mcp-session-id"] =
          id === session?.upstreamId
            ? session.sealed
            : this.#sealer.seal(this.#route, target.url, id);
      } else if (id !== undefined) {
        headers["mcp-session-id"] = undefined;
      }
      request.onResponse?.(statusCode, headers);
    };
    const headers = session
      ? { ...request.headers, "mcp-session-id": session.upstreamId }
      : request.headers;
    target.inFlight++;
    try {
      await target.upstream.forward({ ...request, headers, onResponse });
    } catch (error) {
      // HttpUpstream rejects with a GatewayError only before response headers.
      if (error instanceof GatewayError && error.code === "upstream_unreachable") {
        this.#setHealth(target, false, error);
      }
      throw error;
    } finally {
      target.inFlight--;
    }
  }

  /** One round of checks; a round still waiting on a slow target is not overlapped. */
  async #checkAll(): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    try {
      await Promise.all(this.#targets.map((target) => this.#check(target)));
    } finally {
      this.#checking = false;
    }
  }

  /**
   * Any HTTP answer, even 400 or 405 (a stateful server asked for a stream without a session),
   * means the server is up; only a connection error or timeout means it is down.
   */
  async #check(target: Target): Promise<void> {
    const { timeoutMs } = this.#healthCheck;
    try {
      const response = await httpRequest(target.url, {
        method: "GET",
        headers: { accept: "text/event-stream" },
        dispatcher: this.#checkAgent,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      // A stateless server may open an event stream here; the status was all that was needed.
      // Destroying the body aborts the request, which the body reports as an error.
      response.body.on("error", () => {}).destroy();
      this.#setHealth(target, true, undefined);
    } catch (error) {
      this.#setHealth(target, false, error);
    }
  }

  #setHealth(target: Target, healthy: boolean, error: unknown): void {
    if (this.#closed) return;
    if (!healthy) target.failedAt = Date.now();
    if (target.healthy === healthy) return;
    target.healthy = healthy;
    const fields = { route: this.#route, target: target.url };
    if (healthy) this.#log.info(fields, "upstream target is reachable again");
    else this.#log.warn({ ...fields, err: error }, "upstream target is down");
  }
}
