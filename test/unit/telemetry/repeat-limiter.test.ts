import { describe, expect, it } from "vitest";
import { RepeatLimiter } from "../../../src/telemetry/repeat-limiter.js";

describe("RepeatLimiter", () => {
  it("passes a kind once per interval and reports the weight held back meanwhile", () => {
    let now = 0;
    const limiter = new RepeatLimiter({ intervalMs: 1_000, now: () => now });
    expect(limiter.pass("export failed", 5)).toBe(0);
    now = 500;
    expect(limiter.pass("export failed", 3)).toBeUndefined();
    expect(limiter.pass("export failed", 4)).toBeUndefined();
    // Another kind has its own interval.
    expect(limiter.pass("queue full")).toBe(0);
    now = 1_000;
    expect(limiter.pass("export failed", 1)).toBe(7);
    expect(limiter.pass("export failed", 1)).toBeUndefined();
  });

  it("forgets every kind once it knows too many, rather than growing", () => {
    let now = 0;
    const limiter = new RepeatLimiter({ maxKinds: 2, now: () => now });
    limiter.pass("a");
    limiter.pass("b");
    now = 1;
    limiter.pass("c");
    // "a" was forgotten with the rest, so it passes again at once.
    expect(limiter.pass("a")).toBe(0);
  });
});
