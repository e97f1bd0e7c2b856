import { describe, expect, it } from "vitest";
import { setBounded } from "../../../src/lib/bounded-map.js";

describe("setBounded", () => {
  it("evicts the oldest entry once the map is full, and none to replace a present key", () => {
    const map = new Map<string, number>();
    for (const [index, key] of ["a", "b", "c"].entries()) setBounded(map, key, index, 3);
    setBounded(map, "b", 10, 3);
    expect([...map.entries()]).toEqual([
      ["a", 0],
      ["b", 10],
      ["c", 2],
    ]);
    setBounded(map, "d", 3, 3);
    expect([...map.keys()]).toEqual(["b", "c", "d"]);
  });
});
