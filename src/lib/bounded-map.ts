/**
 * Sets `key` in a map held to at most `max` entries: when full, the oldest entry goes first
 * (a Map iterates in insertion order). For caches that a flood of distinct credentials must
 * not grow without bound; cheaper than an LRU, since only insertions pay, never lookups.
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  if (map.size >= max && !map.has(key)) {
    const oldest = map.keys().next();
    if (!oldest.done) map.delete(oldest.value);
  }
  map.set(key, value);
}
