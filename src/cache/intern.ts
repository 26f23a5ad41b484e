/**
 * Values that many cache entries hold alike (an issuer, an audience list, a
 * scope string, a client id), kept once: a cached entry then points at the
 * shared value instead of holding its own copy of what JSON.parse made. The
 * table is bounded (it starts again when full) and holds only short keys, so
 * a stream of distinct values costs a lookup each, never memory.
 */
export class Interner<T> {
  private readonly table = new Map<string, T>()

  constructor(
    private readonly maxEntries = 4096,
    private readonly maxKeyLength = 256,
  ) {}

  /** The value kept for `key`, made by `make` the first time. */
  get(key: string, make: (key: string) => T): T {
    if (key.length > this.maxKeyLength) return make(key)
    let value = this.table.get(key)
    if (value === undefined) {
      if (this.table.size >= this.maxEntries) this.table.clear()
      value = make(key)
      this.table.set(key, value)
    }
    return value
  }
}

const strings = new Interner<string>()
const same = (s: string) => s

/** The one kept copy of a short string equal to `s`. */
export function internString(s: string): string {
  return strings.get(s, same)
}
