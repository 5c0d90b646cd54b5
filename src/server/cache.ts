// A short-lived memo for the download path, the server's hot path: a rescue system asking
// for its bundle costs a token lookup, a host lookup and a version lookup, each a query.
// Entries live TTL_MS at most and are dropped at once when this process changes what they
// hold (revoke, publish, pin, host update); the TTL bounds what another server instance's
// change can take to be seen (docs/server.md).

export const TTL_MS = 1000;

export class TtlCache<K, V> {
  readonly #m = new Map<K, { at: number; v: Promise<V> }>();
  readonly #ttl: number;
  readonly #max: number;

  /** Expired entries are dropped once more than `max` are held (and the oldest if all are fresh). */
  constructor(ttl = TTL_MS, max = 10_000) {
    this.#ttl = ttl;
    this.#max = max;
  }

  get(k: K, load: () => Promise<V>): Promise<V> {
    const now = Date.now();
    const hit = this.#m.get(k);
    if (hit && now - hit.at < this.#ttl) return hit.v;
    const v = load();
    this.#m.set(k, { at: now, v });
    // A failed load is not remembered.
    v.catch(() => this.#m.delete(k));
    if (this.#m.size > this.#max) {
      for (const [key, e] of this.#m) if (now - e.at >= this.#ttl) this.#m.delete(key);
      // Insertion order is age order: drop the oldest until within bounds.
      for (const key of this.#m.keys()) {
        if (this.#m.size <= this.#max) break;
        this.#m.delete(key);
      }
    }
    return v;
  }

  delete(k: K): void {
    this.#m.delete(k);
  }

  clear(): void {
    this.#m.clear();
  }
}
