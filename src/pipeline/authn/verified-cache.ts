import { hash } from 'node:crypto'
import { BoundedLru } from '../../cache/lru.js'
import type { TokenKeyed } from '../extract/bearer.js'
import type { TrustedIssuer } from './jwt.js'
import { sharedScopes, type Principal } from './principal.js'
import { ownClaim } from './claim-path.js'

/**
 * A cached principal is its own cache entry (one object per token, beside its
 * claims and identity headers): these fields say what it stays valid for.
 */
export interface VerifiedPrincipal extends Principal {
  /** The compiled issuer that verified it: another issuer, or a reloaded one, never matches. */
  readonly verifiedBy: TrustedIssuer
  /** Its key set's version then: a key set that changed since never matches. */
  readonly keyVersion: number
  /** Cached only with an `exp`. */
  readonly expiresAt: number
}

const expiryOf = (entry: VerifiedPrincipal): number => entry.expiresAt * 1000

/**
 * JWTs already verified, so that a repeated token does not pay for signature
 * verification again. Keyed by a SHA-256 of the token (the token itself is
 * not kept), bounded, and valid only for the same issuer object and key-set
 * version, until the token's `exp`. Claims other than those identity headers
 * need are dropped to keep entries small. Time checks (`exp`, `nbf`) and
 * scopes are still applied on every request.
 */
export class VerifiedTokenCache implements TokenKeyed {
  private readonly entries: BoundedLru<VerifiedPrincipal>

  constructor(
    maxEntries: number,
    private readonly now: () => number = Date.now,
  ) {
    this.entries = new BoundedLru(maxEntries, expiryOf, now)
  }

  /** SHA-256 of the token (the one-shot form: about half the cost of createHash on this path). */
  cacheKey(token: string): string {
    return hash('sha256', token, 'base64url')
  }

  /**
   * The principal of a token verified before, with the issuer object that
   * verified it (`verifiedBy`). The caller must still check that its route
   * trusts exactly that issuer object.
   */
  get(key: string): VerifiedPrincipal | undefined {
    const entry = this.entries.get(key)
    if (entry === undefined || entry.keyVersion !== (entry.verifiedBy.keyVersion?.() ?? 0)) return undefined
    const nbf = entry.claims.nbf
    if (typeof nbf === 'number' && nbf - entry.verifiedBy.clockSkewSeconds > this.now() / 1000) return undefined
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
    // Built field by field, in one order: every entry shares one shape.
    const entry: VerifiedPrincipal = {
      issuerId: principal.issuerId,
      issuer: principal.issuer,
      subject: principal.subject,
      clientId: principal.clientId,
      scopes: sharedScopes(principal.scopes),
      expiresAt: principal.expiresAt,
      claims,
      confirmation: principal.confirmation,
      identityHeadersFor: principal.identityHeadersFor,
      identityHeaders: principal.identityHeaders,
      verifiedBy: issuer,
      keyVersion: issuer.keyVersion?.() ?? 0,
    }
    this.entries.set(key, entry)
  }

  /** Forgets every verified token (a replica that may have missed revocations). */
  clear(): void {
    this.entries.clear()
  }

  get size(): number {
    return this.entries.size
  }
}
