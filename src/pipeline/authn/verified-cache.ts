import { hash } from 'node:crypto'
import { ExpiringLru } from '../../cache/lru.js'
import type { TokenKeyed } from '../extract/bearer.js'
import type { TrustedIssuer } from './jwt.js'
import { sharedScopes, type Principal } from './principal.js'
import { ownClaim } from './claim-path.js'

interface Entry {
  readonly principal: Principal
  /** The compiled issuer that verified it: another issuer, or a reloaded one, never matches. */
  readonly issuer: TrustedIssuer
  /** Its key set's version then: a key set that changed since never matches. */
  readonly keyVersion: number
}

/**
 * JWTs already verified, so that a repeated token does not pay for signature
 * verification again. Keyed by a SHA-256 of the token (the token itself is
 * not kept), bounded, and valid only for the same issuer object and key-set
 * version, until the token's `exp`. Claims other than those identity headers
 * need are dropped to keep entries small. Time checks (`exp`, `nbf`) and
 * scopes are still applied on every request.
 */
export class VerifiedTokenCache implements TokenKeyed {
  private readonly entries: ExpiringLru<Entry>

  constructor(
    maxEntries: number,
    private readonly now: () => number = Date.now,
  ) {
    this.entries = new ExpiringLru(maxEntries, now)
  }

  /** SHA-256 of the token (the one-shot form: about half the cost of createHash on this path). */
  cacheKey(token: string): string {
    return hash('sha256', token, 'base64url')
  }

  /**
   * The principal of a token verified before, with the issuer object that
   * verified it. The caller must still check that its route trusts exactly
   * that issuer object.
   */
  get(key: string): { principal: Principal; issuer: TrustedIssuer } | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined || entry.keyVersion !== (entry.issuer.keyVersion?.() ?? 0)) return undefined
    const nbf = entry.principal.claims.nbf
    if (typeof nbf === 'number' && nbf - entry.issuer.clockSkewSeconds > this.now() / 1000) return undefined
    return entry
  }

  /** @param keepClaims the claims identity headers need (the rest is dropped) */
  set(key: string, issuer: TrustedIssuer, principal: Principal, keepClaims: readonly string[]): void {
    if (principal.expiresAt === undefined) return
    const claims: Record<string, unknown> = {}
    for (const name of keepClaims) {
      const value = ownClaim(principal.claims, name)
      if (value !== undefined) claims[name] = value
    }
    const nbf = ownClaim(principal.claims, 'nbf')
    if (nbf !== undefined) claims.nbf = nbf
    this.entries.set(key, { principal: { ...principal, scopes: sharedScopes(principal.scopes), claims }, issuer, keyVersion: issuer.keyVersion?.() ?? 0 }, principal.expiresAt * 1000)
  }

  /** Forgets every verified token (a replica that may have missed revocations). */
  clear(): void {
    this.entries.clear()
  }

  get size(): number {
    return this.entries.size
  }
}
