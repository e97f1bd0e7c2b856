import { createHmac, randomBytes } from "node:crypto";

/**
 * Caches of verified credentials are keyed by an HMAC of the token under a key that lives only
 * in this process, never by the token itself: a heap dump or a cache-timing probe then reveals
 * nothing that could be presented to the gateway.
 */
const DIGEST_KEY = randomBytes(32);

export function digestToken(token: string): string {
  return createHmac("sha256", DIGEST_KEY).update(token).digest("base64url");
}
