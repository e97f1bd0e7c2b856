import { Algorithm, hash } from "@node-rs/argon2";

/**
 * argon2id hashes with the cheapest parameters, so tests do not spend seconds hashing; the
 * gateway accepts any argon2id parameters, and `mcpgw hash-key` uses the RFC 9106 ones.
 */
export function cheapHash(key: string): Promise<string> {
  return hash(key, {
    algorithm: Algorithm.Argon2id,
    memoryCost: 1024,
    timeCost: 1,
    parallelism: 1,
  });
}
