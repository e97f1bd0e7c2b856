/**
 * Lets each kind of log message through at most once per interval and counts what it held
 * back, so that a collector outage or a flood of one SDK warning cannot fill the log, while
 * the next line still says how much was held back.
 */
export class RepeatLimiter {
  readonly #intervalMs: number;
  readonly #maxKinds: number;
  readonly #now: () => number;
  /** Per kind: when it was last let through, and the weight held back since. */
  readonly #kinds = new Map<string, { passedAt: number; heldBack: number }>();

  /** Defaults: once a minute, at most 256 kinds remembered (then they are all forgotten). */
  constructor(options: { intervalMs?: number; maxKinds?: number; now?: () => number } = {}) {
    this.#intervalMs = options.intervalMs ?? 60_000;
    this.#maxKinds = options.maxKinds ?? 256;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Undefined while `kind` is held back (`weight`, e.g. a number of spans, is added to what is
   * held back); otherwise the weight held back since it last passed, 0 the first time.
   */
  pass(kind: string, weight = 1): number | undefined {
    const now = this.#now();
    const seen = this.#kinds.get(kind);
    if (seen && now - seen.passedAt < this.#intervalMs) {
      seen.heldBack += weight;
      return undefined;
    }
    // A kind is a fixed text; should one carry an id after all, the map is not let grow.
    if (!seen && this.#kinds.size >= this.#maxKinds) this.#kinds.clear();
    this.#kinds.set(kind, { passedAt: now, heldBack: 0 });
    return seen?.heldBack ?? 0;
  }
}
