import { describe, expect, it } from "vitest";
import { UsagePool } from "../../../src/runtime/usage-pool.js";

class Counted {
  closed = 0;
  close(): void {
    this.closed++;
  }
}

describe("UsagePool", () => {
  it("builds a component once per key, shares it, and closes it with its last user", async () => {
    const pool = new UsagePool();
    let builds = 0;
    const build = () => {
      builds++;
      return new Counted();
    };
    const [first, second] = await Promise.all([pool.acquire("a", build), pool.acquire("a", build)]);
    expect(first).toBe(second);
    expect(builds).toBe(1);
    const other = await pool.acquire("b", build);
    expect(other).not.toBe(first);

    await pool.release("a");
    expect(first.closed).toBe(0);
    await pool.release("a");
    expect(first.closed).toBe(1);
    expect(pool.keys).toEqual(["b"]);
    // Asked for again, "a" is built anew.
    expect(await pool.acquire("a", build)).not.toBe(first);
    expect(builds).toBe(3);
  });

  it("keeps nothing of a build that fails: the next acquire builds again", async () => {
    const pool = new UsagePool();
    const failure = new Error("cannot fetch");
    await expect(
      pool.acquire("jwks", () => {
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(pool.keys).toEqual([]);
    const built = await pool.acquire("jwks", () => new Counted());
    expect(built).toBeInstanceOf(Counted);
  });
});
