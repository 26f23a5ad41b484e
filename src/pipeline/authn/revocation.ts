import { GatewayError } from '../../errors.js'
import type { Principal } from './principal.js'

/** Denials kept at most; past it the ones that expire first go (their tokens are nearest to expiring anyway). */
export const MAX_DENIALS = 1_000_000

type Relay = (issuer: string, jti: string, expiresAt: number) => void
let relay: Relay | undefined

/**
 * Sets where this process's new denials are sent (a worker of a
 * multi-process gateway sends them to the primary, which hands them to the
 * other workers): one hook per process, whatever list a reload makes.
 */
export function relayRevocations(to: Relay | undefined): void {
  relay = to
}

/**
 * Token ids (`jti`) revoked before their `exp`, per issuer: checked on every
 * request, cached principals included, so a revoked JWT stops working at
 * once rather than at its `exp`. A denial is kept until the token's `exp`
 * (plus the issuer's clock skew), then forgotten. The check is one Map
 * lookup, and none at all while nothing is revoked.
 */
export class RevocationList {
  private readonly byIssuer = new Map<string, Map<string, number>>()
  private count = 0
  private added = 0

  constructor(private readonly now: () => number = Date.now) {}

  get size(): number {
    return this.count
  }

  /** Denies a token id until `expiresAt` (seconds since the epoch); `relayed` ones came from another process. Returns whether it was new. */
  revoke(issuer: string, jti: string, expiresAt: number, relayed = false): boolean {
    let ids = this.byIssuer.get(issuer)
    if (ids === undefined) this.byIssuer.set(issuer, (ids = new Map()))
    if (ids.has(jti)) return false
    if (this.count >= MAX_DENIALS) this.prune(true)
    ids.set(jti, expiresAt)
    this.count++
    if (++this.added % 1024 === 0) this.prune()
    if (!relayed) relay?.(issuer, jti, expiresAt)
    return true
  }

  isRevoked(issuer: string, jti: unknown): boolean {
    if (this.count === 0 || typeof jti !== 'string') return false
    return this.byIssuer.get(issuer)?.has(jti) ?? false
  }

  /** Forgets denials of tokens that have expired (or, when full, the tenth that expire first). */
  prune(full = false): void {
    const nowSeconds = this.now() / 1000
    const all: Array<[Map<string, number>, string, number]> = []
    for (const ids of this.byIssuer.values()) {
      for (const [jti, exp] of ids) {
        if (exp + 300 < nowSeconds) {
          ids.delete(jti)
          this.count--
        } else if (full) all.push([ids, jti, exp])
      }
    }
    if (full && this.count >= MAX_DENIALS) {
      all.sort((a, b) => a[2] - b[2])
      for (const [ids, jti] of all.slice(0, Math.ceil(MAX_DENIALS / 10))) {
        ids.delete(jti)
        this.count--
      }
    }
  }
}

/** Refuses a principal whose token was revoked (401 token_revoked). */
export function checkNotRevoked(principal: Principal, list: RevocationList): void {
  if (list.isRevoked(principal.issuer, principal.claims.jti)) throw new GatewayError('token_revoked', 'the token has been revoked')
}
