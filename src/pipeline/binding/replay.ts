import { createHash } from 'node:crypto'
import { GatewayError } from '../../errors.js'
import type { CallObserver } from '../../observe/calls.js'

/** Where proofs already used are remembered across replicas (Redis `SET NX PX`). */
export interface ReplayStore {
  /** True when the key was not there (and now is), false when it was; undefined when the store did not answer. */
  setIfAbsent(key: string, ttlMs: number, calls?: CallObserver): Promise<boolean | undefined>
  readonly up: boolean
}

export type ReplayFallback = 'deny' | 'local'

export interface ReplayObserver {
  /** A proof was checked in process memory because Redis did not answer (mode `local`). */
  replayCheckedLocally(): void
}

/**
 * Proofs seen, in process memory: the only store without Redis, and the
 * fallback with `on_redis_error: local`. Entries go when their window ends;
 * when `max` are still live, new proofs are refused (503) rather than an old
 * entry dropped (which would let its proof be replayed).
 */
class SeenProofs {
  /** Key → expiry (ms). Insertion order is expiry order: every entry lives the same time. */
  private readonly seen = new Map<string, number>()

  /** True when new (and now remembered); `max`: live entries at most. */
  add(key: string, ttlMs: number, nowMs: number, max: number): boolean {
    for (const [k, expires] of this.seen) {
      if (expires > nowMs) break
      this.seen.delete(k)
    }
    const expires = this.seen.get(key)
    if (expires !== undefined && expires > nowMs) return false
    if (this.seen.size >= max) throw new GatewayError('dependency_unavailable', 'too many DPoP proofs to remember; retry later', { retryAfter: 1 })
    this.seen.delete(key)
    this.seen.set(key, nowMs + ttlMs)
    return true
  }
}

/**
 * A DPoP proof's `jti` is accepted once within its window (RFC 9449 §11.1),
 * across every replica when Redis is configured. Keyed by issuer, key
 * thumbprint and jti, hashed (no client data in key names).
 */
export interface ReplaySettings {
  /** How long a proof is remembered, in ms. */
  readonly ttlMs: number
  readonly onRedisError: ReplayFallback
  /** Proofs remembered in process memory at most. */
  readonly maxEntries: number
}

export class ReplayGuard {
  private readonly local = new SeenProofs()

  /** Proofs seen outlive reloads; the settings of each check come with it. */
  constructor(
    private readonly shared: ReplayStore | undefined,
    private readonly prefix: string,
    private readonly observer: ReplayObserver | undefined,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Reserves the proof; refuses (`dpop_proof_replayed`) one seen before.
   * Undefined when decided at once (in memory); else a promise to await
   * before the request goes on (its Redis command leaves with others).
   */
  reserve(issuerId: string, jkt: string, jti: string, settings: ReplaySettings, calls?: CallObserver): Promise<void> | undefined {
    const key = 'dpop:' + createHash('sha256').update(`${issuerId}\u0000${jkt}\u0000${jti}`).digest('base64url').slice(0, 32)
    const shared = this.shared
    if (shared === undefined) return this.locally(key, settings)
    if (!shared.up) return this.unavailable(key, settings)
    return shared.setIfAbsent(this.prefix + key, settings.ttlMs, calls).then((fresh) => {
      if (fresh === undefined) return this.unavailable(key, settings)
      if (!fresh) throw replayed()
      return undefined
    })
  }

  private locally(key: string, settings: ReplaySettings): undefined {
    if (!this.local.add(key, settings.ttlMs, this.now(), settings.maxEntries)) throw replayed()
    return undefined
  }

  private unavailable(key: string, settings: ReplaySettings): undefined {
    if (settings.onRedisError === 'deny') throw new GatewayError('dependency_unavailable', 'DPoP proofs cannot be checked for replay now; retry later', { retryAfter: 1 })
    this.observer?.replayCheckedLocally()
    return this.locally(key, settings)
  }
}

function replayed(): GatewayError {
  return new GatewayError('dpop_proof_replayed', 'the DPoP proof was already used')
}
