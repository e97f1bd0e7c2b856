import { describe, expect, it } from "vitest";
import { KeyStore } from "../../../src/auth/api-keys.js";
import { AuthError } from "../../../src/auth/principal.js";
import { cheapHash } from "../../helpers/keys.js";

async function store(options: ConstructorParameters<typeof KeyStore>[1] = {}) {
  const keys = [
    { id: "one", hash: await cheapHash("key-one"), scopes: ["mcp:read"] },
    { id: "two", hash: await cheapHash("key-two"), scopes: ["*"] },
  ];
  const runs: { keyId: string; matched: boolean }[] = [];
  const keyStore = new KeyStore(keys, { ...options, onArgon2Run: (run) => runs.push(run) });
  return { keyStore, runs };
}

describe("KeyStore", () => {
  it("resolves a key to its principal and verifies it with argon2 only once", async () => {
    const { keyStore, runs } = await store();
    const principal = await keyStore.verify("key-two");
    expect(principal).toEqual({ type: "api_key", keyId: "two", scopes: ["*"], scope: "*" });
    expect(runs).toEqual([
      { keyId: "one", matched: false },
      { keyId: "two", matched: true },
    ]);
    await keyStore.verify("key-two");
    expect(runs).toHaveLength(2);
  });

  it("shares one verification among concurrent first uses of a key", async () => {
    const { keyStore, runs } = await store();
    await Promise.all(Array.from({ length: 10 }, async () => keyStore.verify("key-one")));
    expect(runs).toEqual([{ keyId: "one", matched: true }]);
  });

  it("refuses a wrong key with unknown_key and remembers it until the negative TTL passes", async () => {
    let now = 1_000;
    const { keyStore, runs } = await store({ negativeTtlMs: 60_000, now: () => now });
    const attempt = async () => keyStore.verify("wrong");
    await expect(attempt()).rejects.toMatchObject({ result: "unknown_key", status: 401 });
    await expect(attempt()).rejects.toBeInstanceOf(AuthError);
    expect(runs).toHaveLength(2); // one run per configured key, for the first try only
    now += 60_001;
    await expect(attempt()).rejects.toBeInstanceOf(AuthError);
    expect(runs).toHaveLength(4);
  });

  it("bounds the memory of wrong keys", async () => {
    const { keyStore, runs } = await store({ maxNegativeEntries: 2 });
    for (const key of ["w1", "w2", "w3", "w1"]) {
      await expect(async () => keyStore.verify(key)).rejects.toBeInstanceOf(AuthError);
    }
    // w1 was evicted by w3, so it costs argon2 runs again.
    expect(runs).toHaveLength(8);
  });

  it("refuses a hash that is not argon2id when it is built", async () => {
    const argon2i =
      "$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
    expect(() => new KeyStore([{ id: "old", hash: argon2i, scopes: [] }])).toThrow(/not argon2id/);
  });
});
