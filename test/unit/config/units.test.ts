import { describe, expect, it } from "vitest";
import { formatDuration, parseDuration, parseSize } from "../../../src/config/units.js";

describe("parseDuration", () => {
  it.each([
    ["250ms", 250],
    ["30s", 30_000],
    ["1.5s", 1_500],
    ["5m", 300_000],
    ["1h", 3_600_000],
    ["1d", 86_400_000],
  ])("%s is %d ms", (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(["", "30", "5x", "-1s", "1 h", "s", "1e3s"])("refuses %j", (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });

  it("formats back the way an operator writes it", () => {
    expect(formatDuration(300_000)).toBe("5m");
    expect(formatDuration(1_500)).toBe("1500ms");
  });
});

describe("parseSize", () => {
  it.each([
    ["4MiB", 4 * 1024 * 1024],
    ["16KiB", 16 * 1024],
    ["1MB", 1_000_000],
    ["512", 512],
    ["2 kib", 2048],
  ])("%s is %d bytes", (text, bytes) => expect(parseSize(text)).toBe(bytes));

  it.each(["", "4 megs", "MiB", "-1"])("refuses %j", (text) =>
    expect(parseSize(text)).toBeUndefined(),
  );
});

describe("values too large to count exactly", () => {
  it("are refused rather than read as Infinity or a rounded number", () => {
    expect(parseDuration(`${"9".repeat(400)}s`)).toBeUndefined();
    expect(parseDuration("9999999999999d")).toBeUndefined();
    expect(parseSize(`${"9".repeat(20)}GiB`)).toBeUndefined();
    expect(parseDuration("9999d")).toBe(9999 * 86_400_000);
  });
});
