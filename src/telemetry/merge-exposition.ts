/**
 * One Prometheus exposition from the workers' own (`workers: N`): the series of the same name
 * and labels are combined, so a scrape of any worker sees the whole gateway. Counters,
 * histograms and most gauges (requests in flight, open streams, memory) add up; a few gauges
 * are the same fact in every process and keep one value: the config generation (the oldest
 * still serving: the lowest), a pool target's health (up while every worker finds it up), a
 * pending restart or the Node version (the highest), a process
 * start time (the earliest), event loop lag (the worst).
 */

type Combine = (a: number, b: number) => number;

const sum: Combine = (a, b) => a + b;

function combinerOf(family: string): Combine {
  if (
    family === "mcpgw_config_generation" ||
    family === "mcpgw_upstream_target_up" ||
    family.endsWith("_start_time_seconds")
  ) {
    return Math.min;
  }
  if (
    family === "mcpgw_config_restart_pending" ||
    family.endsWith("_info") ||
    family.endsWith("_max_fds") ||
    family.includes("eventloop_lag")
  ) {
    return Math.max;
  }
  return sum;
}

interface Family {
  comments: string[];
  /** Series by their name and labels, in first-seen order. */
  samples: Map<string, number>;
  combine: Combine;
}

/** The name a sample line's family is declared under (`_bucket`, `_sum`, `_count` included). */
function familyOf(sampleName: string, declared: ReadonlySet<string>): string {
  if (declared.has(sampleName)) return sampleName;
  for (const suffix of ["_bucket", "_sum", "_count", "_total", "_created"]) {
    if (sampleName.endsWith(suffix)) {
      const base = sampleName.slice(0, -suffix.length);
      if (declared.has(base)) return base;
    }
  }
  return sampleName;
}

export function mergeExpositions(texts: readonly string[]): string {
  const families = new Map<string, Family>();
  const familyNamed = (name: string): Family => {
    let family = families.get(name);
    if (family === undefined) {
      family = { comments: [], samples: new Map(), combine: combinerOf(name) };
      families.set(name, family);
    }
    return family;
  };
  for (const text of texts) {
    const declared = new Set<string>();
    for (const line of text.split("\n")) {
      if (line === "") continue;
      if (line.startsWith("#")) {
        const [, kind, name] = line.split(" ", 3);
        if ((kind !== "HELP" && kind !== "TYPE") || name === undefined) continue;
        declared.add(name);
        const family = familyNamed(name);
        // Each family's HELP and TYPE once, from the first worker that has them.
        if (!family.comments.some((comment) => comment.startsWith(`# ${kind} `))) {
          family.comments.push(line);
        }
        continue;
      }
      // `name{labels} value` or `name value`; label values may hold spaces, so the value is
      // what follows the last space.
      const space = line.lastIndexOf(" ");
      if (space <= 0) continue;
      const series = line.slice(0, space);
      const value = Number(line.slice(space + 1));
      const brace = series.indexOf("{");
      const name = brace === -1 ? series : series.slice(0, brace);
      const family = familyNamed(familyOf(name, declared));
      const previous = family.samples.get(series);
      family.samples.set(series, previous === undefined ? value : family.combine(previous, value));
    }
  }
  const lines: string[] = [];
  for (const family of families.values()) {
    lines.push(...family.comments);
    for (const [series, value] of family.samples) lines.push(`${series} ${formatValue(value)}`);
  }
  return `${lines.join("\n")}\n`;
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(value);
}
