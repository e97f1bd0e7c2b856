/**
 * Properties of the duration and size parsers: every number with a unit parses to the number
 * times the unit's factor, fractions round as documented, and any text outside the grammar is
 * undefined (never an exception). Checked against an independent model of each grammar.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatDuration, parseDuration, parseSize } from "../../../src/config/units.js";

const DURATION_FACTORS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const SIZE_FACTORS = {
  b: 1,
  kb: 1_000,
  mb: 1_000_000,
  gb: 1_000_000_000,
  kib: 1024,
  mib: 1024 * 1024,
  gib: 1024 * 1024 * 1024,
} as const;
type DurationUnit = keyof typeof DURATION_FACTORS;
type SizeUnit = keyof typeof SIZE_FACTORS;

const durationUnit = fc.constantFrom(...(Object.keys(DURATION_FACTORS) as DurationUnit[]));
const sizeUnit = fc.constantFrom(...(Object.keys(SIZE_FACTORS) as SizeUnit[]));

/** What `String.prototype.trim` and `\s` treat as white space (ECMA-262 WhiteSpace, LineTerminator). */
const WHITE_SPACE = [
  ..."\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff",
  ...Array.from({ length: 11 }, (_, i) => String.fromCharCode(0x2000 + i)),
];
const space = fc.string({ unit: fc.constantFrom(...WHITE_SPACE), maxLength: 3 });

/** A natural number `n` such that `n * factor` is a safe integer. */
const amountFor = (factor: number) =>
  fc.integer({ min: 0, max: Math.floor(Number.MAX_SAFE_INTEGER / factor) });

/** `digits [. digits]`, split: the decimal number the grammar accepts, or undefined. */
function decimal(text: string): { whole: string; fraction: string } | undefined {
  const isDigits = (part: string) =>
    part.length > 0 && [...part].every((c) => c >= "0" && c <= "9");
  const dot = text.indexOf(".");
  const whole = dot < 0 ? text : text.slice(0, dot);
  const fraction = dot < 0 ? "" : text.slice(dot + 1);
  if (!isDigits(whole) || (dot >= 0 && !isDigits(fraction))) return undefined;
  return { whole, fraction };
}

function trimmed(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && WHITE_SPACE.includes(text.charAt(start))) start++;
  while (end > start && WHITE_SPACE.includes(text.charAt(end - 1))) end--;
  return text.slice(start, end);
}

/** Whether the duration grammar accepts `text`: white space, decimal, unit, white space. */
function modelIsDuration(text: string): boolean {
  const body = trimmed(text);
  const unit = (Object.keys(DURATION_FACTORS) as DurationUnit[])
    .filter((name) => body.endsWith(name))
    .some((name) => decimal(body.slice(0, -name.length)) !== undefined);
  return unit;
}

/** Whether the size grammar accepts `text`: decimal, white space, optional unit in any case. */
function modelIsSize(text: string): boolean {
  const body = trimmed(text);
  const lower = body.toLowerCase();
  const units = ["", ...Object.keys(SIZE_FACTORS)];
  return units.some((unit) => {
    if (!lower.endsWith(unit) || body.length < unit.length) return false;
    const number = body.slice(0, body.length - unit.length);
    // White space between number and unit only when there is a unit.
    return decimal(unit === "" ? number : trimmed(number)) !== undefined;
  });
}

/** The exact value of `whole.fraction * factor`, and the parse, are at most half a unit apart. */
function expectRoundedFrom(
  parsed: number | undefined,
  whole: number,
  fraction: string,
  factor: number,
) {
  const exact = (whole + Number(`0.${fraction || "0"}`)) * factor;
  expect(Number.isInteger(parsed)).toBe(true);
  expect(Math.abs((parsed as number) - exact)).toBeLessThanOrEqual(0.5 + exact * 1e-12);
}

/** Text near the grammars: digits, dots, unit letters in both cases, white space, signs. */
const unitish = fc.string({
  unit: fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(..."0123456789") },
    { weight: 4, arbitrary: fc.constantFrom(..."msdhkgibMSDHKGIB") },
    { weight: 2, arbitrary: fc.constantFrom(".", " ", "\t", "\n", "\u00a0", "\ufeff") },
    { weight: 1, arbitrary: fc.constantFrom("-", "+", "e", "E", "_", ",", "x", "Infinity", "٣") },
  ),
  maxLength: 12,
});
/** A well-formed duration or size with one character inserted, removed or replaced. */
const nearValid = fc
  .tuple(
    fc.oneof(
      fc.tuple(fc.nat(100_000), durationUnit).map(([n, unit]) => `${n}${unit}`),
      fc.tuple(fc.nat(100_000), fc.mixedCase(sizeUnit)).map(([n, unit]) => `${n} ${unit}`),
      fc.tuple(fc.nat(999), fc.nat(999), durationUnit).map(([a, b, unit]) => `${a}.${b}${unit}`),
    ),
    fc.nat(),
    fc.nat(2),
    unitish,
  )
  .map(([text, at, edit, char]) => {
    const index = at % (text.length + 1);
    const insert = char.slice(0, 1);
    if (edit === 0) return text.slice(0, index) + insert + text.slice(index);
    if (edit === 1) return text.slice(0, index) + text.slice(index + 1);
    return text.slice(0, index) + insert + text.slice(index + 1);
  });
const anyText = fc.oneof(
  nearValid,
  unitish,
  fc.string({ maxLength: 20 }),
  fc.string({ unit: "binary", maxLength: 20 }),
);

describe("parseDuration (properties)", () => {
  it("parses n followed by a unit, with white space around, to n times the unit", () => {
    fc.assert(
      fc.property(
        durationUnit.chain((unit) =>
          fc.tuple(fc.constant(unit), amountFor(DURATION_FACTORS[unit]), space, space),
        ),
        ([unit, n, before, after]) => {
          expect(parseDuration(`${before}${n}${unit}${after}`)).toBe(n * DURATION_FACTORS[unit]);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("rounds a decimal amount to the nearest millisecond", () => {
    fc.assert(
      fc.property(
        durationUnit,
        fc.integer({ min: 0, max: 100_000 }),
        fc.string({ unit: fc.constantFrom(..."0123456789"), minLength: 1, maxLength: 4 }),
        (unit, whole, fraction) => {
          const parsed = parseDuration(`${whole}.${fraction}${unit}`);
          expectRoundedFrom(parsed, whole, fraction, DURATION_FACTORS[unit]);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("is undefined exactly for text outside the grammar, and never throws", () => {
    fc.assert(
      fc.property(anyText, (text) => {
        const parsed = parseDuration(text);
        expect(parsed !== undefined).toBe(modelIsDuration(text));
        if (parsed !== undefined) expect(parsed).toBeGreaterThanOrEqual(0);
      }),
      { numRuns: 1500 },
    );
  });

  it("reads back what formatDuration writes", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10 * 365 * 86_400_000 }), (ms) => {
        expect(parseDuration(formatDuration(ms))).toBe(ms);
      }),
      { numRuns: 300 },
    );
  });
});

describe("parseSize (properties)", () => {
  it("parses n with a unit in any case, or none, to n times the unit", () => {
    fc.assert(
      fc.property(
        sizeUnit.chain((unit) =>
          fc.tuple(
            fc.mixedCase(fc.constant(unit)),
            amountFor(SIZE_FACTORS[unit]),
            space,
            space,
            space,
          ),
        ),
        ([unit, n, before, between, after]) => {
          const factor = SIZE_FACTORS[unit.toLowerCase() as SizeUnit];
          expect(parseSize(`${before}${n}${between}${unit}${after}`)).toBe(n * factor);
          expect(parseSize(`${before}${n}${after}`)).toBe(n);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("rounds a decimal amount down to whole bytes", () => {
    fc.assert(
      fc.property(
        sizeUnit,
        fc.integer({ min: 0, max: 100_000 }),
        fc.string({ unit: fc.constantFrom(..."0123456789"), minLength: 1, maxLength: 4 }),
        (unit, whole, fraction) => {
          const parsed = parseSize(`${whole}.${fraction}${unit}`) as number;
          const exact = (whole + Number(`0.${fraction}`)) * SIZE_FACTORS[unit];
          expect(Number.isInteger(parsed)).toBe(true);
          expect(parsed).toBeLessThanOrEqual(exact * (1 + 1e-12));
          expect(parsed).toBeGreaterThan(exact * (1 - 1e-12) - 1);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("is undefined exactly for text outside the grammar, and never throws", () => {
    fc.assert(
      fc.property(anyText, (text) => {
        const parsed = parseSize(text);
        expect(parsed !== undefined).toBe(modelIsSize(text));
        if (parsed !== undefined) expect(parsed).toBeGreaterThanOrEqual(0);
      }),
      { numRuns: 1500 },
    );
  });
});
