/**
 * A bounded in-process map whose entries expire. Least recently used entries
 * are evicted first once `maxEntries` is reached.
 */
export class ExpiringLru<V> {
  private readonly map = new Map<string, { value: V; expiresAt: number }>()

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
    if (this.map.size > this.maxEntries) {
      const oldest = this.map.keys().next().value
      if (oldest !== undefined) this.map.delete(oldest)
    }
  }

  delete(key: string): void {
    this.map.delete(key)
  }

  clear(): void {
    this.map.clear()
  }
}
