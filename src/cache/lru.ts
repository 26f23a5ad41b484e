/** What an in-process tier of a cache is to its users: bounded, expiring entries under string keys. */
export interface ExpiringStore<V> {
  get(key: string): V | undefined
  /** `expiresAt`: ms since the epoch, by the store's clock. */
  set(key: string, value: V, expiresAt: number): void
  delete(key: string): void
  clear(): void
  readonly size: number
}

/**
 * A bounded in-process map of entries that carry their own expiry (read by
 * `expiresAt`). Least recently used entries are evicted first once
 * `maxEntries` is reached. Caches of many small values hold them here
 * directly: no wrapper object per entry (a wrapper and its boxed expiry are a
 * fifth of a cached token's memory, and objects the collector must trace).
 */
export class BoundedLru<E> {
  private readonly map = new Map<string, E>()
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
    /** When an entry expires, in ms since the epoch. */
    private readonly expiresAt: (entry: E) => number,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.map.size
  }

  get(key: string): E | undefined {
    const entry = this.map.get(key)
    if (entry === undefined) return undefined
    if (this.expiresAt(entry) <= this.now()) {
      this.map.delete(key)
      return undefined
    }
    // Move to the most recent position.
    this.map.delete(key)
    this.map.set(key, entry)
    return entry
  }

  set(key: string, entry: E): void {
    if (this.expiresAt(entry) <= this.now()) return
    this.map.delete(key)
    this.map.set(key, entry)
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

interface Expiring<V> {
  readonly value: V
  readonly expiresAt: number
}

const expiryOf = (entry: Expiring<unknown>): number => entry.expiresAt

/** A BoundedLru of any values, each with the expiry it was set with. */
export class ExpiringLru<V> implements ExpiringStore<V> {
  private readonly entries: BoundedLru<Expiring<V>>

  constructor(maxEntries: number, now: () => number = Date.now) {
    this.entries = new BoundedLru<Expiring<V>>(maxEntries, expiryOf, now)
  }

  get size(): number {
    return this.entries.size
  }

  get(key: string): V | undefined {
    return this.entries.get(key)?.value
  }

  set(key: string, value: V, expiresAt: number): void {
    this.entries.set(key, { value, expiresAt })
  }

  delete(key: string): void {
    this.entries.delete(key)
  }

  clear(): void {
    this.entries.clear()
  }
}
