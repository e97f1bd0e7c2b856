/**
 * The authorization server's store on the shared Redis (`store: {type: redis}`), so that any
 * replica continues what another began: a client registered at one, a login shown by one and
 * posted to another, a code issued by one and redeemed at another, a refresh token rotated
 * anywhere, a revocation refused everywhere.
 *
 * Whoever reads Redis learns no token: ids (a refresh token's id is the token) are in key names
 * only as SHA-256 digests, and every value that holds one, or a payload, is sealed with
 * `secrets.encryption_key`. Keys, under the store's prefix and `as:`:
 * - `<model>:<digest of id>`: a hash of the sealed payload and, once used, `consumed`;
 *   expiring with it;
 * - `grant:<grantId>`: the set of model keys of a grant, so revoking the grant deletes them;
 * - `uid:<digest>`, `user_code:<digest>`: the id of the model they name, sealed;
 * - `issued:<grantId>`: the JWT access tokens a grant issued (jti → expiry, ms);
 * - `once:<digest of key>`: a sign-in in progress at the OpenID Connect provider, or its ticket, taken
 *   once (GETDEL), expiring;
 * - `revoked`: revoked access tokens (a sorted set by expiry), announced on the channel of the
 *   same name; each replica keeps the set in memory (the request path never asks Redis) and
 *   reads it again whenever its subscription reconnects, so a revocation missed while Redis was
 *   away is not missed for good.
 */
import { createHash } from "node:crypto";
import type { ChainableCommander, Redis } from "ioredis";
import type { Logger } from "../log.js";
import type { SecretBox } from "../secrets/cipher.js";
import type { RedisStore } from "../store/redis.js";
import type { ModelAdapter, Store } from "./store.js";

/** Models oidc-provider ties to a grant (revoked with it). */
const GRANTABLE = new Set([
  "AccessToken",
  "AuthorizationCode",
  "RefreshToken",
  "DeviceCode",
  "ClientCredentials",
  "BackchannelAuthenticationRequest",
]);

export class RedisAuthorizationStore implements Store {
  readonly #redis: Redis;
  readonly #box: SecretBox;
  readonly #prefix: string;
  readonly #log: Logger;
  #subscriber: Redis | undefined;

  constructor(store: RedisStore, box: SecretBox, log: Logger) {
    this.#redis = store.client;
    this.#box = box;
    this.#prefix = `${store.keyPrefix}as:`;
    this.#log = log;
  }

  adapter(model: string): ModelAdapter {
    const redis = this.#redis;
    const box = this.#box;
    const prefix = this.#prefix;
    const key = (id: string) => `${prefix}${model}:${digest(id)}`;
    const find = async (id: string) => {
      const [payload, consumed] = await redis.hmget(key(id), "payload", "consumed");
      if (payload === null || payload === undefined) return undefined;
      const parsed = JSON.parse(box.openText(payload)) as Record<string, unknown>;
      return consumed === null || consumed === undefined
        ? parsed
        : { ...parsed, consumed: Number(consumed) };
    };
    const findBy = async (index: string, value: string) => {
      const id = await redis.get(`${prefix}${index}:${digest(value)}`);
      return id === null ? undefined : find(box.openText(id));
    };
    return {
      async upsert(id, payload, expiresIn) {
        const multi = redis
          .multi()
          .del(key(id))
          .hset(key(id), "payload", box.seal(JSON.stringify(payload)));
        if (expiresIn) multi.expire(key(id), expiresIn);
        const index = (name: string, value: unknown) => {
          if (typeof value !== "string") return;
          const indexKey = `${prefix}${name}:${digest(value)}`;
          if (expiresIn) multi.set(indexKey, box.seal(id), "EX", expiresIn);
          else multi.set(indexKey, box.seal(id));
        };
        index("uid", payload.uid);
        index("user_code", payload.userCode);
        const grantId = payload.grantId;
        if (GRANTABLE.has(model) && typeof grantId === "string") {
          const grantKey = `${prefix}grant:${grantId}`;
          multi.sadd(grantKey, key(id));
          // The grant's set lives as long as its longest-lived member.
          if (expiresIn) multi.expire(grantKey, expiresIn, "NX").expire(grantKey, expiresIn, "GT");
        }
        await exec(multi);
      },
      find,
      findByUid: (uid) => findBy("uid", uid),
      findByUserCode: (userCode) => findBy("user_code", userCode),
      async consume(id) {
        await redis.hset(key(id), "consumed", Math.floor(Date.now() / 1000));
      },
      async destroy(id) {
        await redis.del(key(id));
      },
      async revokeByGrantId(grantId) {
        const grantKey = `${prefix}grant:${grantId}`;
        const members = await redis.smembers(grantKey);
        await redis.del(grantKey, ...members);
      },
    };
  }

  async revokedTokens(): Promise<Map<string, number>> {
    const now = Date.now();
    await this.#redis.zremrangebyscore(`${this.#prefix}revoked`, "-inf", now);
    const flat = await this.#redis.zrange(`${this.#prefix}revoked`, 0, -1, "WITHSCORES");
    const revoked = new Map<string, number>();
    for (let i = 0; i + 1 < flat.length; i += 2) {
      revoked.set(flat[i] as string, Number(flat[i + 1]));
    }
    return revoked;
  }

  async saveRevoked(jti: string, until: number): Promise<void> {
    const channel = `${this.#prefix}revoked`;
    await exec(this.#redis.multi().zadd(channel, until, jti).publish(channel, `${until} ${jti}`));
  }

  /**
   * Subscribes (a connection of its own, as Redis wants) to revocations made at any replica,
   * and reads the whole set again each time the subscription is ready after a disconnect.
   */
  onRevoked(listener: (jti: string, until: number) => void): void {
    const channel = `${this.#prefix}revoked`;
    const subscriber = this.#redis.duplicate({
      enableOfflineQueue: true,
      commandTimeout: undefined,
      connectionName: "mcpgw-revocations",
    });
    this.#subscriber = subscriber;
    subscriber.on("error", () => {
      // The main connection logs Redis's state; this one reconnects by itself.
    });
    subscriber.on("message", (_channel: string, message: string) => {
      const space = message.indexOf(" ");
      listener(message.slice(space + 1), Number(message.slice(0, space)));
    });
    let connectedBefore = false;
    subscriber.on("ready", () => {
      if (!connectedBefore) {
        connectedBefore = true;
        return;
      }
      this.revokedTokens().then(
        (revoked) => {
          for (const [jti, until] of revoked) listener(jti, until);
        },
        (error: unknown) =>
          this.#log.warn(
            { err: (error as Error).message },
            "authorization server: could not read revocations again after redis came back",
          ),
      );
    });
    subscriber.subscribe(channel).catch(() => {
      // Subscribed again by ioredis on reconnect.
    });
  }

  async issued(jti: string, grantId: string, until: number): Promise<void> {
    const key = `${this.#prefix}issued:${grantId}`;
    await exec(
      this.#redis
        .multi()
        .hset(key, jti, until)
        .pexpireat(key, until, "NX")
        .pexpireat(key, until, "GT"),
    );
  }

  async tokensOfGrant(grantId: string): Promise<[string, number][]> {
    const tokens = await this.#redis.hgetall(`${this.#prefix}issued:${grantId}`);
    return Object.entries(tokens).map(([jti, until]) => [jti, Number(until)]);
  }

  async forgetGrant(grantId: string): Promise<void> {
    await this.#redis.del(`${this.#prefix}issued:${grantId}`);
  }

  async putOnce(key: string, value: string, ttlMs: number): Promise<void> {
    await this.#redis.set(`${this.#prefix}once:${digest(key)}`, this.#box.seal(value), "PX", ttlMs);
  }

  async takeOnce(key: string): Promise<string | undefined> {
    const sealed = await this.#redis.getdel(`${this.#prefix}once:${digest(key)}`);
    return sealed === null ? undefined : this.#box.openText(sealed);
  }

  close(): void {
    this.#subscriber?.disconnect(false);
  }
}

/** Runs a transaction; a command of it that failed fails the whole. */
async function exec(multi: ChainableCommander): Promise<void> {
  for (const [error] of (await multi.exec()) ?? []) if (error) throw error;
}

function digest(id: string): string {
  return createHash("sha256").update(id).digest("base64url");
}
