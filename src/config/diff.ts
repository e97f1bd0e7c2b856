/** What a reload changes: the key paths that differ between two configs. */
import { formatPath } from "./load.js";
import { type Config, RESTART_REQUIRED } from "./schema.js";

export interface ConfigChange {
  /** Every changed key path, e.g. `auth.keys[1].scopes`, `upstream.url`. */
  changed: string[];
  /** The changed keys that only a restart applies. */
  restartRequired: string[];
}

export function diffConfig(before: Config, after: Config): ConfigChange {
  const changed: string[] = [];
  collect(before, after, [], changed);
  const restartRequired = RESTART_REQUIRED.filter((key) =>
    changed.some(
      (path) => path === key || path.startsWith(`${key}.`) || path.startsWith(`${key}[`),
    ),
  );
  return { changed, restartRequired };
}

function collect(a: unknown, b: unknown, path: (string | number)[], out: string[]): void {
  if (Object.is(a, b)) return;
  if (Array.isArray(a) && Array.isArray(b)) {
    // Keys are matched by position; a longer or shorter list is reported as the list itself.
    if (a.length !== b.length) {
      out.push(formatPath(path));
      return;
    }
    for (const [index, item] of a.entries()) collect(item, b[index], [...path, index], out);
    return;
  }
  if (isRecord(a) && isRecord(b)) {
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
      collect(a[key], b[key], [...path, key], out);
    }
    return;
  }
  out.push(formatPath(path));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
