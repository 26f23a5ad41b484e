import { ExpiringLru } from './lru.js'
import type { SharedStore } from './redis-store.js'

/** Turns values into strings for the shared tier and back. `decode` returns undefined for anything it does not fully recognise. */
export interface Codec<T> {
  encode(value: T): string
  decode(text: string): T | undefined
}

export type CacheTier = 'memory' | 'shared'
export type CacheSource = CacheTier | 'origin'

export interface TieredCacheOptions<T> {
  readonly memory: ExpiringLru<T>
  readonly shared?: SharedStore | undefined
  readonly codec: Codec<T>
  readonly now?: () => number
  /** Observes each tier lookup (metrics). */
  readonly onLookup?: (tier: CacheTier, hit: boolean) => void
}

export interface Loaded<T> {
  readonly value: T
  /** How long the value may be cached, in ms; 0 or less: not at all. */
  readonly ttlMs: number
}

/**
 * An in-process tier in front of an optional shared tier, with single flight:
 * concurrent loads of one key in this process share one call to the origin.
 *
 * Shared values are stored as `<expires-at ms>|<codec text>`; one that is
 * expired, malformed or not recognised by the codec is a miss.
 */
export class TieredCache<T> {
  private readonly inFlight = new Map<string, Promise<{ value: T; source: CacheSource }>>()
  private readonly now: () => number

  constructor(private readonly options: TieredCacheOptions<T>) {
    this.now = options.now ?? Date.now
  }

  get sharedUp(): boolean | undefined {
    return this.options.shared?.up
  }

  /**
   * The cached value, or the origin's through `load` (once per key at a time).
   * `accept` vets values read from the shared tier; a refused one is a miss.
   */
  get(key: string, load: () => Promise<Loaded<T>>, accept: (value: T) => boolean = () => true): Promise<{ value: T; source: CacheSource }> {
    const memory = this.options.memory.get(key)
    this.options.onLookup?.('memory', memory !== undefined)
    if (memory !== undefined) return Promise.resolve({ value: memory, source: 'memory' })
    let pending = this.inFlight.get(key)
    if (pending === undefined) {
      pending = this.fill(key, load, accept).finally(() => this.inFlight.delete(key))
      this.inFlight.set(key, pending)
    }
    return pending
  }

  private async fill(key: string, load: () => Promise<Loaded<T>>, accept: (value: T) => boolean): Promise<{ value: T; source: CacheSource }> {
    const shared = this.options.shared
    if (shared) {
      const text = await shared.get(key)
      let found = text === undefined ? undefined : this.decode(text)
      if (found !== undefined && !accept(found.value)) found = undefined
      this.options.onLookup?.('shared', found !== undefined)
      if (found !== undefined) {
        this.options.memory.set(key, found.value, found.expiresAt)
        return { value: found.value, source: 'shared' }
      }
    }
    const loaded = await load()
    if (loaded.ttlMs > 0) {
      const expiresAt = this.now() + loaded.ttlMs
      this.options.memory.set(key, loaded.value, expiresAt)
      if (shared) await shared.set(key, `${expiresAt}|${this.options.codec.encode(loaded.value)}`, loaded.ttlMs)
    }
    return { value: loaded.value, source: 'origin' }
  }

  private decode(text: string): { value: T; expiresAt: number } | undefined {
    const bar = text.indexOf('|')
    if (bar < 1) return undefined
    const expiresAt = Number(text.slice(0, bar))
    if (!Number.isSafeInteger(expiresAt) || expiresAt <= this.now()) return undefined
    const value = this.options.codec.decode(text.slice(bar + 1))
    return value === undefined ? undefined : { value, expiresAt }
  }

  /** Forgets a key in this process (the shared tier expires on its own). */
  forget(key: string): void {
    this.options.memory.delete(key)
  }
}
