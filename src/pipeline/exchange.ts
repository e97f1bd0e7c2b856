/**
 * The request pipeline's mechanism: one typed exchange per request to an MCP route, passed
 * through the route's ordered list of steps (fastify's hooks, Envoy's filter chain). A step
 * reads what earlier steps put on the exchange, adds its own, and refuses the request by
 * throwing (an AuthError or a GatewayError, answered in one place). Later capabilities are new
 * steps in the list (authorize, rate limit, upstream credentials), not branches in the others;
 * docs/architecture.md shows where each goes.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AuditRecord } from "../audit/record.js";
import type { AuditLog } from "../audit/writer.js";
import type { Principal } from "../auth/principal.js";
import type { Logger } from "../log.js";
import type { JsonRpcParseError, JsonRpcPeek } from "../mcp/jsonrpc.js";
import type { MessageTransform } from "../mcp/rewrite.js";
import type { Generation } from "../runtime/generation.js";
import type { Route } from "../runtime/routes.js";
import type { GatewayMetrics } from "../telemetry/metrics.js";
import type { RequestTrace } from "../telemetry/tracing.js";
import type { Cancellation, Upstream } from "../upstream/upstream.js";

/** One request to an MCP route, from its arrival to its audit line. */
export interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** The generation the request started on; it serves the request to its end. */
  readonly generation: Generation;
  /** The route of the request's path, in that generation. */
  readonly route: Route;
  /** The audit line being filled in; also what metrics and the span are made of at the end. */
  readonly record: AuditRecord;
  /** Cancels the upstream request: the client left, or shutdown closes a stream. */
  readonly cancellation: Cancellation;
  /** `performance.now()` at arrival. */
  readonly startedAt: number;
  /** Undefined while tracing is off. */
  readonly trace: RequestTrace | undefined;
  /** The received POST body, forwarded byte for byte. */
  body: Buffer | undefined;
  /** What the body says, for a POST whose body is JSON. */
  peek: JsonRpcPeek | undefined;
  /** A POST body that is not JSON: refused, but only after authentication. */
  parseError: JsonRpcParseError | undefined;
  /** Who is calling, once authenticated. */
  principal: Principal | undefined;
  /** Whether the upstream answered with an event stream. */
  streaming: boolean;
  /**
   * Set by a step that must change what the upstream answers (list filtering): each
   * JSON-RPC message of the response passes through it. Unset, the bytes pass untouched.
   */
  transformResponse: MessageTransform | undefined;
  /**
   * Set by the upstream credentials step: the headers that carry the gateway's own credentials
   * (sent instead of the client's), and what to do when the upstream refuses them (401).
   */
  upstreamAuth: { headers: Readonly<Record<string, string>>; rejected(): void } | undefined;
  /** Set while the exchange is held as a long-lived stream: lets go of it at the end. */
  releaseStream: (() => void) | undefined;
}

/** What the steps need of the running gateway. */
export interface PipelineContext {
  readonly audit: AuditLog;
  readonly log: Logger;
  readonly draining: boolean;
  /** Calls `listener` when shutdown starts; returns the function that unregisters it. */
  onDrain(listener: () => void): () => void;
  /**
   * Calls `listener` when a reload leaves `upstream` unused (its route removed, or its
   * settings changed); returns the function that unregisters it.
   */
  onUpstreamDropped(upstream: Upstream, listener: () => void): () => void;
  /**
   * Marks the exchange a long-lived stream (the session era's GET, 2026-07-28's
   * subscriptions/listen): shutdown, or a reload that drops its upstream, closes it.
   */
  holdOpenStream(exchange: Exchange): void;
  /** The challenge's `resource_metadata` (RFC 9728 §5.1); undefined while OAuth is off. */
  resourceMetadataUrl(req: IncomingMessage, exchange: Exchange): string | undefined;
  readonly metrics: GatewayMetrics;
}

/**
 * A step of a route's pipeline. It returns nothing when it is done at once, and a promise only
 * when it waits (a body, a first verification, the upstream), so that a request whose
 * credentials are cached pays no extra turn of the event loop per step.
 */
export type Step = (exchange: Exchange, context: PipelineContext) => void | Promise<void>;

/**
 * Runs `steps` in order; the first that throws (or rejects) ends the run with its error.
 * While every step answers at once the run stays synchronous and returns undefined; from the
 * first step that waits, the rest run in one async continuation. (Each await is a turn of the
 * microtask queue on every request: the pipeline adds none that the work does not need.)
 */
export function runSteps(
  steps: readonly Step[],
  exchange: Exchange,
  context: PipelineContext,
): Promise<void> | undefined {
  for (let index = 0; index < steps.length; index++) {
    const waiting = (steps[index] as Step)(exchange, context);
    if (waiting !== undefined) return continueSteps(waiting, steps, index + 1, exchange, context);
  }
  return undefined;
}

async function continueSteps(
  waiting: Promise<void>,
  steps: readonly Step[],
  from: number,
  exchange: Exchange,
  context: PipelineContext,
): Promise<void> {
  await waiting;
  for (let index = from; index < steps.length; index++) {
    const next = (steps[index] as Step)(exchange, context);
    if (next !== undefined) await next;
  }
}
