import { createHmac, timingSafeEqual } from 'node:crypto'
import type { ExpiringStore } from './lru.js'
import type { SharedStore } from './redis-store.js'
import type { CallObserver } from '../observe/calls.js'

/** Turns values into strings for the shared tier and back. `decode` returns undefined for anything it does not fully recognise. */
export interface Codec<T> {
  encode(value: T): string
  decode(text: string): T | undefined
}

export type CacheTier = 'memory' | 'shared'
export type CacheSource = CacheTier | 'origin'

export interface TieredCacheOptions<T> {
  readonly memory: ExpiringStore<T>
  readonly shared?: SharedStore | undefined
  readonly codec: Codec<T>
  /** What keys are stored under in the shared tier: this prefix, then the key (which names the value in this process). */
  readonly sharedPrefix?: string
  readonly now?: () => number
  /** Observes each tier lookup (metrics). */
  readonly onLookup?: (tier: CacheTier, hit: boolean) => void
  /** A shared value whose seal does not verify was found (and treated as a miss). */
  readonly onIntegrityFailure?: () => void
}

export interface Loaded<T> {
  readonly value: T
  /** How long the value may be cached, in ms; 0 or less: not at all. */
  readonly ttlMs: number
}

/** The format of shared values; a value of any other format is a miss. */
const FORMAT = 's1'
const MAC_LENGTH = 43 // base64url of an HMAC-SHA-256

/**
 * The seal of a shared value: an HMAC-SHA-256, under a secret the caller
 * derives from what the value vouches for (the token), over the format, the
 * key it is stored under, its expiry and its whole encoded text. Whoever can
 * write to the shared store but does not hold the secret cannot make, alter,
 * move or extend a value that verifies.
 */
export function seal(secret: Buffer, key: string, expiresAt: number, text: string): string {
  return createHmac('sha256', secret).update(`${FORMAT}\u0000${key}\u0000${expiresAt}\u0000`).update(text).digest('base64url')
}

/**
 * An in-process tier in front of an optional shared tier, with single flight:
 * concurrent loads of one key in this process share one call to the origin.
 *
 * Shared values are stored as `s1|<seal>|<expires-at ms>|<codec text>`, the
 * seal computed by `seal()` under the secret the caller hands to `get`. A
 * value that is expired, malformed, not recognised by the codec, or whose seal
 * does not verify is a miss; a bad seal is also reported (onIntegrityFailure).
 * The in-process tier holds only values this process loaded or verified.
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
   * `secret` gives the sealing secret of this key's shared value; it is only
   * called when the shared tier is used.
   */
  get(key: string, load: () => Promise<Loaded<T>>, secret: () => Buffer, calls?: CallObserver): Promise<{ value: T; source: CacheSource }> {
    const memory = this.options.memory.get(key)
    this.options.onLookup?.('memory', memory !== undefined)
    if (memory !== undefined) return Promise.resolve({ value: memory, source: 'memory' })
    let pending = this.inFlight.get(key)
    if (pending === undefined) {
      pending = this.fill(key, load, secret, calls).finally(() => this.inFlight.delete(key))
      this.inFlight.set(key, pending)
    }
    return pending
  }

  private async fill(key: string, load: () => Promise<Loaded<T>>, secret: () => Buffer, calls: CallObserver | undefined): Promise<{ value: T; source: CacheSource }> {
    const shared = this.options.shared
    let sealing: Buffer | undefined
    const sharedKey = (this.options.sharedPrefix ?? '') + key
    if (shared) {
      const text = await shared.get(sharedKey, calls)
      let found: { value: T; expiresAt: number } | undefined
      if (text !== undefined) {
        sealing = secret()
        found = this.open(sharedKey, text, sealing)
      }
      this.options.onLookup?.('shared', found !== undefined)
      if (found !== undefined) {
        this.options.memory.set(key, found.value, found.expiresAt)
        return { value: found.value, source: 'shared' }
      }
    }
    const loaded = await load()
    if (loaded.ttlMs > 0) {
      const expiresAt = this.now() + Math.ceil(loaded.ttlMs)
      this.options.memory.set(key, loaded.value, expiresAt)
      if (shared) {
        const text = this.options.codec.encode(loaded.value)
        const mac = seal((sealing ??= secret()), sharedKey, expiresAt, text)
        await shared.set(sharedKey, `${FORMAT}|${mac}|${expiresAt}|${text}`, loaded.ttlMs, calls)
      }
    }
    return { value: loaded.value, source: 'origin' }
  }

  /** Verifies and decodes a shared value; undefined for anything but a live value sealed for this key. */
  private open(key: string, stored: string, secret: Buffer): { value: T; expiresAt: number } | undefined {
    const head = FORMAT.length + 1 + MAC_LENGTH + 1
    if (!stored.startsWith(`${FORMAT}|`) || stored.charCodeAt(head - 1) !== 0x7c) return this.tampered()
    const bar = stored.indexOf('|', head)
    if (bar < 0) return this.tampered()
    const expiresText = stored.slice(head, bar)
    const text = stored.slice(bar + 1)
    const expiresAt = Number(expiresText)
    if (!/^[0-9]{1,16}$/.test(expiresText) || !Number.isSafeInteger(expiresAt)) return this.tampered()
    const given = Buffer.from(stored.slice(FORMAT.length + 1, head - 1))
    const expected = Buffer.from(seal(secret, key, expiresAt, text))
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return this.tampered()
    if (expiresAt <= this.now()) return undefined
    const value = this.options.codec.decode(text)
    return value === undefined ? this.tampered() : { value, expiresAt }
  }

  private tampered(): undefined {
    this.options.onIntegrityFailure?.()
    return undefined
  }

  /** Forgets a key in this process (the shared tier expires on its own). */
  forget(key: string): void {
    this.options.memory.delete(key)
  }

  /** Forgets everything this process holds (the shared tier is checked again on the next lookup). */
  forgetAll(): void {
    this.options.memory.clear()
  }
}
