/**
 * Rate limits (`rate_limits:`): token buckets per caller, per tool, or one for everyone, each
 * on the routes its `route` glob names. A request takes a token from every bucket that applies;
 * one that finds a bucket empty is answered 429 with `Retry-After` and a JSON-RPC error, and
 * audited with the limit's id as `rule`. Buckets live in memory (one replica); several
 * replicas share a budget through Redis (to follow).
 */
import { ANONYMOUS, type Principal } from "../auth/principal.js";
import type { Config } from "../config/schema.js";
import { GatewayError } from "../errors.js";
import { setBounded } from "../lib/bounded-map.js";
import type { Step } from "../pipeline/exchange.js";
import { glob } from "./policy.js";

export type RateLimitConfig = NonNullable<Config["rate_limits"]>[number];

/** Buckets per limit, at most: a flood of distinct callers cannot grow memory without bound. */
const MAX_BUCKETS = 100_000;

interface Bucket {
  tokens: number;
  /** performance.now() of the last refill. */
  at: number;
}

class Limit {
  readonly id: string;
  readonly #key: RateLimitConfig["key"];
  readonly #route: RegExp | undefined;
  /** Tokens per millisecond. */
  readonly #rate: number;
  readonly #burst: number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(config: RateLimitConfig) {
    this.id = config.id;
    this.#key = config.key;
    this.#route = config.route === undefined ? undefined : glob(config.route);
    this.#rate = config.rate.perMs;
    this.#burst = config.burst ?? Math.max(1, Math.ceil(config.rate.perMs * 1000));
  }

  /** Milliseconds until a token is free, or 0 when one was taken now. */
  take(route: string, principal: Principal, tool: string | undefined, now: number): number {
    if (this.#route && !this.#route.test(route)) return 0;
    const key = this.#bucketKey(principal, tool);
    if (key === undefined) return 0;
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      bucket = { tokens: this.#burst, at: now };
      setBounded(this.#buckets, key, bucket, MAX_BUCKETS);
    } else {
      bucket.tokens = Math.min(this.#burst, bucket.tokens + (now - bucket.at) * this.#rate);
      bucket.at = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return (1 - bucket.tokens) / this.#rate;
  }

  #bucketKey(principal: Principal, tool: string | undefined): string | undefined {
    switch (this.#key) {
      case "global":
        return "";
      case "tool":
        return tool;
      case "principal":
        return callerKey(principal);
    }
  }
}

/**
 * Every limit's buckets, and the step that takes from them. A component of the generation
 * (runtime/usage-pool.ts): a reload that leaves `rate_limits` as it was keeps the buckets, so a
 * SIGHUP is no way around a limit.
 */
export class RateLimiter {
  readonly step: Step;

  constructor(configs: readonly RateLimitConfig[], onLimited?: (id: string) => void) {
    this.step = rateLimit(configs, onLimited);
  }

  close(): void {}
}

/** A caller's bucket key, made once per principal (verified credentials share one object). */
const callerKeys = new WeakMap<Principal, string>();

function callerKey(principal: Principal): string {
  let key = callerKeys.get(principal);
  if (key === undefined) {
    key =
      principal.keyId !== undefined
        ? `key:${principal.keyId}`
        : `oauth:${principal.oauthClientId ?? ""}:${principal.sub ?? ""}`;
    callerKeys.set(principal, key);
  }
  return key;
}

function rateLimit(configs: readonly RateLimitConfig[], onLimited?: (id: string) => void): Step {
  const limits = configs.map((config) => new Limit(config));
  return (exchange) => {
    const now = performance.now();
    const principal = exchange.principal ?? ANONYMOUS;
    for (const limit of limits) {
      const waitMs = limit.take(exchange.route.path, principal, exchange.record.tool, now);
      if (waitMs > 0) {
        exchange.record.rule = limit.id;
        onLimited?.(limit.id);
        throw new GatewayError("rate_limited", `rate limit ${limit.id} reached`, {
          retryAfter: Math.max(1, Math.ceil(waitMs / 1000)),
          data: { rule: limit.id },
        });
      }
    }
  };
}

/** `100/s`, `30/m`, `1000/h` -> tokens per millisecond; undefined when malformed. */
export function parseRate(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*\/\s*(s|m|h)\s*$/.exec(text);
  if (!match) return undefined;
  const count = Number(match[1]);
  const per = { s: 1_000, m: 60_000, h: 3_600_000 }[match[2] as "s" | "m" | "h"];
  return count > 0 ? count / per : undefined;
}
