import { describe, expect, it } from 'vitest'
import type { Principal } from '../../src/pipeline/authn/principal.js'
import { parseDenial, RevocationList, tokenDigest } from '../../src/cache/revocation-list.js'
import { checkNotRevoked } from '../../src/pipeline/authn/revocation.js'

/** Whether the gateway's check refuses the principal. */
function revoked(list: RevocationList, p: Principal, token?: () => string): boolean {
  try {
    checkNotRevoked(p, list, token)
    return false
  } catch {
    return true
  }
}

const principal = (claims: Record<string, unknown>, subject?: string, clientId?: string): Principal => ({ issuerId: 'i', issuer: 'https://i', subject, clientId, scopes: new Set(), expiresAt: undefined, claims, confirmation: undefined })

describe('RevocationList', () => {
  it('denies by jti, by token hash, and by subject or client before a time; nothing else', () => {
    let now = 1_000_000_000
    const list = new RevocationList(() => now)
    const t = now / 1000
    list.apply({ kind: 'jti', issuer: 'https://i', id: 'j1', until: t + 60 })
    list.apply({ kind: 'token', issuer: '*', id: tokenDigest('opaque-1'), until: t + 60 })
    list.apply({ kind: 'sub', issuer: 'https://i', id: 'alice', before: t, until: t + 60 })
    list.apply({ kind: 'client', issuer: 'https://i', id: 'job', before: t, until: t + 60 })
    expect(revoked(list, principal({ jti: 'j1' }))).toBe(true)
    expect(revoked(list, principal({ jti: 'j2' }))).toBe(false)
    expect(revoked(list, principal({}), () => 'opaque-1')).toBe(true)
    expect(revoked(list, principal({}), () => 'opaque-2')).toBe(false)
    expect(revoked(list, principal({ iat: t - 1 }, 'alice'))).toBe(true)
    expect(revoked(list, principal({ iat: t + 1 }, 'alice'))).toBe(false)
    expect(revoked(list, principal({}, 'alice'))).toBe(true) // no iat: denied with the rest
    expect(revoked(list, principal({ iat: t - 1 }, 'bob', 'job'))).toBe(true)
    expect(revoked(list, { ...principal({ jti: 'j1' }), issuer: 'https://other' })).toBe(false)
    // A later "before" widens a subject's denial; a repeat changes nothing.
    expect(list.apply({ kind: 'sub', issuer: 'https://i', id: 'alice', before: t + 10, until: t + 70 })).toBe(true)
    expect(list.apply({ kind: 'sub', issuer: 'https://i', id: 'alice', before: t + 10, until: t + 70 })).toBe(false)
    expect(revoked(list, principal({ iat: t + 5 }, 'alice'))).toBe(true)
    expect(list.size).toBe(4)
    // Forgotten once every token it could deny has expired (with 5 minutes of skew).
    now += (70 + 301) * 1000
    list.prune()
    expect(list.size).toBe(0)
    expect(revoked(list, principal({ jti: 'j1' }))).toBe(false)
  })

  it('reads only well-formed denials', () => {
    expect(parseDenial({ kind: 'jti', issuer: 'i', id: 'x', until: 1 })).toBeDefined()
    for (const bad of [null, 'x', { kind: 'all', issuer: 'i', id: 'x', until: 1 }, { kind: 'jti', issuer: 'i', id: '', until: 1 }, { kind: 'sub', issuer: 'i', id: 'x', until: 1 }, { kind: 'jti', issuer: 'i', id: 'x', until: 'soon' }]) {
      expect(parseDenial(bad), JSON.stringify(bad)).toBeUndefined()
    }
  })
})
