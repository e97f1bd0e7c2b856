/**
 * The demo API key that the README and `npm start` publish. Anyone can present it, so a config
 * whose `auth.keys` would accept it is refused unless it says it is a demo
 * (`auth.allow_demo_key: true`): a copy of the example file must not go to production with a
 * key that protects nothing.
 */
import { verify } from "@node-rs/argon2";

export const DEMO_API_KEY = "mcpgw-demo-key-do-not-use-in-production";

/** The password of the demo user of `npm start`'s authorization server, published the same way. */
export const DEMO_PASSWORD = "mcpgw-demo-password-do-not-use-in-production";

/**
 * Verdicts by hash string. A salted hash can only be recognised by an argon2 run, so each
 * distinct hash costs one run in the process's life, at load; reloads of an unchanged key
 * list cost none, and the request path never asks.
 */
const verdicts = new Map<string, Promise<boolean>>();

/** True when `hash` (an argon2id PHC string) verifies the published demo key. */
export function isDemoKeyHash(hash: string): Promise<boolean> {
  return verifiesPublished(hash, DEMO_API_KEY);
}

/** True when `hash` verifies the published demo user's password. */
export function isDemoPasswordHash(hash: string): Promise<boolean> {
  return verifiesPublished(hash, DEMO_PASSWORD);
}

function verifiesPublished(hash: string, secret: string): Promise<boolean> {
  const key = `${secret}\0${hash}`;
  let verdict = verdicts.get(key);
  if (verdict === undefined) {
    verdict = verify(hash, secret).catch(() => false);
    verdicts.set(key, verdict);
  }
  return verdict;
}
