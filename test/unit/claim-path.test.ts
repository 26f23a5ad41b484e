import { describe, expect, it } from 'vitest'
import { parseClaimPath, readClaim } from '../../src/pipeline/authn/claim-path.js'
import { scopesFromClaims } from '../../src/pipeline/authn/principal.js'
import { GatewayError } from '../../src/errors.js'

describe('claim paths', () => {
  it('parse dotted names, with quotes around names that hold dots', () => {
    expect(parseClaimPath('scope')).toEqual(['scope'])
    expect(parseClaimPath('realm_access.roles')).toEqual(['realm_access', 'roles'])
    expect(parseClaimPath('resource_access.orders-api.roles')).toEqual(['resource_access', 'orders-api', 'roles'])
    expect(parseClaimPath('"https://corp.example/roles"')).toEqual(['https://corp.example/roles'])
    expect(parseClaimPath('"https://corp.example/ext".roles')).toEqual(['https://corp.example/ext', 'roles'])
    for (const bad of ['', '.a', 'a.', 'a..b', '"a', 'a"b"', '""']) expect(parseClaimPath(bad), bad).toBeUndefined()
  })

  it('read own properties of plain objects only', () => {
    const claims = { a: { b: ['x'] }, s: 'str', arr: [{ c: 1 }] }
    expect(readClaim(claims, ['a', 'b'])).toEqual(['x'])
    expect(readClaim(claims, ['s', 'length'])).toBeUndefined()
    expect(readClaim(claims, ['arr', '0', 'c'])).toBeUndefined()
    expect(readClaim(claims, ['a', '__proto__'])).toBeUndefined()
    expect(readClaim(claims, ['toString'])).toBeUndefined()
  })

  it('scopes merge from every configured claim, strings or lists of scope tokens', () => {
    const paths = [['scp'], ['roles'], ['permissions'], ['realm_access', 'roles']]
    const claims = { scp: 'Orders.Read', roles: ['Orders.Read.All'], permissions: ['read:orders'], realm_access: { roles: ['r1'] } }
    expect([...scopesFromClaims(claims, paths)].sort()).toEqual(['Orders.Read', 'Orders.Read.All', 'r1', 'read:orders'])
    // Only the configured claims count: roles are not scopes unless the issuer says so.
    expect([...scopesFromClaims({ roles: ['admin'] })]).toEqual([])
    expect(() => scopesFromClaims({ roles: [{ admin: true }] }, [['roles']])).toThrow(GatewayError)
    expect(() => scopesFromClaims({ roles: ['a b'] }, [['roles']])).toThrow(GatewayError)
  })
})
