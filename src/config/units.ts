/** Parsers for the human-friendly scalar forms the config accepts: durations and sizes. */

const DURATION_UNITS_MS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/**
 * `30s`, `5m`, `1h`, `250ms`, `1.5s` -> milliseconds; undefined when the text is not a duration,
 * or one too large to count exactly (over Number.MAX_SAFE_INTEGER ms).
 */
export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text.trim());
  if (!match) return undefined;
  const [, amount, unit] = match as unknown as [string, string, string];
  return exact(Math.round(Number(amount) * (DURATION_UNITS_MS[unit] as number)));
}

function exact(value: number): number | undefined {
  return Number.isSafeInteger(value) ? value : undefined;
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1_000,
  mb: 1_000_000,
  gb: 1_000_000_000,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

const SIZE = /^(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?$/i;

/** `4MiB`, `16KiB`, `1MB`, `512` -> bytes; undefined when the text is not a size, or too large. */
export function parseSize(text: string): number | undefined {
  const match = SIZE.exec(text.trim());
  if (!match) return undefined;
  const unit = (match[2] ?? "b").toLowerCase();
  return exact(Math.floor(Number(match[1]) * (SIZE_UNITS[unit] as number)));
}

/** Formats milliseconds the way an operator would write them in the config. */
export function formatDuration(ms: number): string {
  for (const [unit, factor] of [
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1_000],
  ] as const) {
    if (ms >= factor && ms % factor === 0) return `${ms / factor}${unit}`;
  }
  return `${ms}ms`;
}
