/**
 * State that outlives a generation (caddy's usage pool): a JWKS cache with its background
 * refresh, an upstream's pool of keep-alive connections. A generation acquires each component
 * by the identity of its configuration; the next generation, built from a config that asks for
 * the same, gets the same component instead of a new one (no JWKS fetched again, no upstream
 * connection dropped by a reload), and a component is closed when the last generation using it
 * has closed.
 */

export interface Component {
  close(): void | Promise<void>;
}

interface Entry {
  value: Promise<Component>;
  users: number;
}

export class UsagePool {
  readonly #entries = new Map<string, Entry>();

  /**
   * The component for `key`, built by `build` when no one holds one. A build that fails leaves
   * nothing behind, so the next acquire builds again. Each acquire is matched by one release.
   */
  async acquire<T extends Component>(key: string, build: () => T | Promise<T>): Promise<T> {
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      const value = Promise.resolve().then(build);
      entry = { value, users: 0 };
      this.#entries.set(key, entry);
      value.catch(() => {
        if (this.#entries.get(key)?.value === value) this.#entries.delete(key);
      });
    }
    entry.users++;
    try {
      return (await entry.value) as T;
    } catch (error) {
      entry.users--;
      throw error;
    }
  }

  /** Lets go of `key`; the last user's release closes the component. */
  async release(key: string): Promise<void> {
    const entry = this.#entries.get(key);
    if (entry === undefined) return;
    entry.users--;
    if (entry.users > 0) return;
    this.#entries.delete(key);
    await (await entry.value).close();
  }

  /** Keys held now, for tests and diagnostics. */
  get keys(): string[] {
    return [...this.#entries.keys()];
  }
}
