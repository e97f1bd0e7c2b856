/**
 * Rate limits (`rate_limits:`): token buckets per caller, per tool, or one for everyone, each
 * on the routes its `route` glob names. A request takes a token from every bucket that applies,
 * or from none: one that finds a bucket empty is answered 429 with `Retry-After` and a JSON-RPC
 * error, and audited with the limit's id as `rule`. Buckets live in this process's memory, or
 * in Redis (`store: {type: redis}`), where every replica takes from the same ones: one script,
 * one round trip, atomic.
 */
import { createHash } from "node:crypto";
import { ANONYMOUS, type Principal } from "../auth/principal.js";
import type { Config } from "../config/schema.js";
import { GatewayError } from "../errors.js";
import { setBounded } from "../lib/bounded-map.js";
import type { Exchange, Step } from "../pipeline/exchange.js";
import type { RedisStore } from "../store/redis.js";
import { glob } from "./policy.js";

export type RateLimitConfig = NonNullable<Config["rate_limits"]>[number];

/** Buckets per limit in memory, at most: a flood of distinct callers cannot grow memory. */
const MAX_BUCKETS = 100_000;

/** A tool name longer than this keys its bucket by its hash (names come from requests). */
const MAX_PLAIN_KEY = 128;

class Limit {
  readonly id: string;
  readonly #key: RateLimitConfig["key"];
  readonly #route: RegExp | undefined;
  /** Tokens per millisecond. */
  readonly rate: number;
  readonly burst: number;

  constructor(config: RateLimitConfig) {
    this.id = config.id;
    this.#key = config.key;
    this.#route = config.route === undefined ? undefined : glob(config.route);
    this.rate = config.rate.perMs;
    this.burst = config.burst ?? Math.max(1, Math.ceil(config.rate.perMs * 1000));
  }

  /** The bucket of this limit a request takes from, or undefined when the limit skips it. */
  bucketOf(route: string, principal: Principal, tool: string | undefined): string | undefined {
    if (this.#route && !this.#route.test(route)) return undefined;
    switch (this.#key) {
      case "global":
        return "";
      case "tool":
        return tool === undefined ? undefined : toolKey(tool);
      case "principal":
        return callerKey(principal);
    }
  }
}

/** The limit a request found empty, and how long until it has a token. */
interface Refusal {
  limit: Limit;
  waitMs: number;
}

/** Where the buckets are: takes a token from each of `keys` (one per limit), or from none. */
interface Buckets {
  take(
    limits: readonly Limit[],
    keys: readonly string[],
  ): Refusal | undefined | Promise<Refusal | undefined>;
}

interface Bucket {
  tokens: number;
  /** performance.now() of the last refill. */
  at: number;
}

class MemoryBuckets implements Buckets {
  /** Per limit id. */
  readonly #buckets = new Map<string, Map<string, Bucket>>();

  take(limits: readonly Limit[], keys: readonly string[]): Refusal | undefined {
    const now = performance.now();
    // Refill every bucket first: a request that one of them refuses takes from none.
    const buckets: Bucket[] = [];
    for (let index = 0; index < limits.length; index++) {
      const limit = limits[index] as Limit;
      const bucket = this.#bucket(limit, keys[index] as string, now);
      bucket.tokens = Math.min(limit.burst, bucket.tokens + (now - bucket.at) * limit.rate);
      bucket.at = now;
      if (bucket.tokens < 1) return { limit, waitMs: (1 - bucket.tokens) / limit.rate };
      buckets.push(bucket);
    }
    for (const bucket of buckets) bucket.tokens -= 1;
    return undefined;
  }

  #bucket(limit: Limit, key: string, now: number): Bucket {
    let buckets = this.#buckets.get(limit.id);
    if (buckets === undefined) {
      buckets = new Map();
      this.#buckets.set(limit.id, buckets);
    }
    let bucket = buckets.get(key);
    if (bucket === undefined) {
      bucket = { tokens: limit.burst, at: now };
      setBounded(buckets, key, bucket, MAX_BUCKETS);
    }
    return bucket;
  }
}

/**
 * KEYS: the buckets; ARGV: each bucket's rate (tokens per ms) and burst, in turn. Returns
 * {0, ""} when a token was taken from each, or {i, ms}: bucket i (from 1) is empty for ms more
 * (then nothing was taken). A bucket is a hash {t: tokens, at: ms}, on Redis's clock so that
 * every replica refills alike, and expires once it would be full again.
 */
const TAKE_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local tokens = {}
for i = 1, #KEYS do
  local rate = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local bucket = redis.call('HMGET', KEYS[i], 't', 'at')
  local t = tonumber(bucket[1])
  if t == nil then
    t = burst
  else
    t = math.min(burst, t + math.max(0, now - tonumber(bucket[2])) * rate)
  end
  if t < 1 then
    return {i, tostring((1 - t) / rate)}
  end
  tokens[i] = t
end
for i = 1, #KEYS do
  local rate = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  redis.call('HSET', KEYS[i], 't', tostring(tokens[i] - 1), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate) + 1000)
end
return {0, ''}
`;

interface TakeCommand {
  mcpgwTakeTokens(keyCount: number, ...args: (string | number)[]): Promise<[number, string]>;
}

class RedisBuckets implements Buckets {
  readonly #store: RedisStore;

  constructor(store: RedisStore) {
    this.#store = store;
    store.client.defineCommand("mcpgwTakeTokens", { lua: TAKE_SCRIPT });
  }

  /** When Redis fails, the request goes on as if no limit applied (counted, logged). */
  async take(limits: readonly Limit[], keys: readonly string[]): Promise<Refusal | undefined> {
    const args: (string | number)[] = [];
    for (let index = 0; index < limits.length; index++) {
      args.push(`${this.#store.keyPrefix}rl:${(limits[index] as Limit).id}:${keys[index]}`);
    }
    for (const limit of limits) args.push(limit.rate, limit.burst);
    try {
      const client = this.#store.client as unknown as TakeCommand;
      const [index, wait] = await client.mcpgwTakeTokens(limits.length, ...args);
      if (index === 0) return undefined;
      return { limit: limits[index - 1] as Limit, waitMs: Number(wait) };
    } catch (error) {
      this.#store.failed(error);
      return undefined;
    }
  }
}

export interface RateLimiterDeps {
  /** The shared store; buckets are in memory without it. */
  redis?: RedisStore | undefined;
  onLimited?: (id: string) => void;
}

/**
 * Every limit's buckets, and the step that takes from them. A component of the generation
 * (runtime/usage-pool.ts): a reload that leaves `rate_limits` and the store as they were keeps
 * the buckets, so a SIGHUP is no way around a limit.
 */
export class RateLimiter {
  readonly step: Step;

  constructor(configs: readonly RateLimitConfig[], deps: RateLimiterDeps = {}) {
    const limits = configs.map((config) => new Limit(config));
    const buckets = deps.redis ? new RedisBuckets(deps.redis) : new MemoryBuckets();
    this.step = rateLimit(limits, buckets, deps.onLimited);
  }

  /** Nothing to let go of: the buckets are memory, or the store's (its own component). */
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

function toolKey(tool: string): string {
  if (tool.length <= MAX_PLAIN_KEY) return `tool:${tool}`;
  return `tool#${createHash("sha256").update(tool).digest("base64url")}`;
}

function rateLimit(
  limits: readonly Limit[],
  buckets: Buckets,
  onLimited: ((id: string) => void) | undefined,
): Step {
  const refuse = (exchange: Exchange, refusal: Refusal | undefined): void => {
    if (refusal === undefined) return;
    const { id } = refusal.limit;
    exchange.record.rule = id;
    onLimited?.(id);
    throw new GatewayError("rate_limited", `rate limit ${id} reached`, {
      retryAfter: Math.max(1, Math.ceil(refusal.waitMs / 1000)),
      data: { rule: id },
    });
  };
  return (exchange) => {
    const principal = exchange.principal ?? ANONYMOUS;
    const route = exchange.route.path;
    const tool = exchange.record.tool;
    const applying: Limit[] = [];
    const keys: string[] = [];
    for (const limit of limits) {
      const key = limit.bucketOf(route, principal, tool);
      if (key === undefined) continue;
      applying.push(limit);
      keys.push(key);
    }
    if (applying.length === 0) return;
    const taken = buckets.take(applying, keys);
    if (taken instanceof Promise) return taken.then((refusal) => refuse(exchange, refusal));
    refuse(exchange, taken);
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
