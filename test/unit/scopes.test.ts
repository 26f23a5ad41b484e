import { describe, expect, it } from 'vitest'
import { GatewayError } from '../../src/errors.js'
import { principalFromClaims, scopesFromClaims } from '../../src/pipeline/authn/principal.js'
import { authorize, routeScopes, satisfies, type RouteScopes } from '../../src/pipeline/authz/scopes.js'

const principal = (scope: string) => principalFromClaims('corp', 'https://i', { scope, sub: 's' })
const rule = (allOf: string[] = [], anyOf: string[] = []) => ({ allOf, anyOf })

describe('scopes from claims', () => {
  it('reads space-delimited scope and scp as string or array, merged', () => {
    expect([...scopesFromClaims({ scope: 'a  b c' })]).toEqual(['a', 'b', 'c'])
    expect([...scopesFromClaims({ scp: 'a b' })]).toEqual(['a', 'b'])
    expect([...scopesFromClaims({ scp: ['a', 'b'] })]).toEqual(['a', 'b'])
    expect([...scopesFromClaims({ scope: 'a', scp: ['b'] })]).toEqual(['a', 'b'])
    expect([...scopesFromClaims({})]).toEqual([])
  })

  it('refuses malformed scope claims', () => {
    expect(() => scopesFromClaims({ scope: ['a'] })).toThrow(GatewayError)
    expect(() => scopesFromClaims({ scp: [1] })).toThrow(GatewayError)
    expect(() => scopesFromClaims({ scope: 7 })).toThrow(GatewayError)
  })
})

describe('scope rules', () => {
  it('all_of needs every scope, any_of at least one', () => {
    const granted = new Set(['a', 'b'])
    expect(satisfies(granted, rule(['a', 'b']))).toBe(true)
    expect(satisfies(granted, rule(['a', 'c']))).toBe(false)
    expect(satisfies(granted, rule([], ['c', 'b']))).toBe(true)
    expect(satisfies(granted, rule([], ['c', 'd']))).toBe(false)
    expect(satisfies(granted, rule(['a'], ['c', 'd']))).toBe(false)
    expect(satisfies(granted, rule())).toBe(true)
  })

  it('compares whole scope tokens, case-sensitively', () => {
    expect(satisfies(new Set(['orders:reader']), rule(['orders:read']))).toBe(false)
    expect(satisfies(new Set(['Orders:Read']), rule(['orders:read']))).toBe(false)
  })

  it('per-method rules add to the route rule', () => {
    const required: RouteScopes = routeScopes(rule(['read']), new Map([['POST', rule(['write'])]]), false)
    expect(() => authorize(principal('read'), required, 'GET')).not.toThrow()
    expect(() => authorize(principal('write'), required, 'POST')).toThrow(GatewayError)
    expect(() => authorize(principal('read write'), required, 'POST')).not.toThrow()
    try {
      authorize(principal('read'), required, 'POST')
    } catch (err) {
      expect((err as GatewayError).code).toBe('scope_insufficient')
      expect((err as GatewayError).requiredScopes).toEqual(['write'])
    }
  })

  it('"none" accepts any authenticated principal', () => {
    expect(() => authorize(principal(''), routeScopes(null, new Map(), true), 'DELETE')).not.toThrow()
  })

  it('method rules are total: unnamed methods on an every-method route need every named rule; HEAD follows GET', () => {
    const required = routeScopes(rule(['read']), new Map([['POST', rule(['write'])], ['DELETE', rule([], ['admin', 'root'])], ['GET', rule(['list'])]]), true)
    for (const m of ['TRACE', 'QUERY', 'PROPFIND', 'OPTIONS', 'PUT']) {
      expect(() => authorize(principal('read list'), required, m), m).toThrow(GatewayError)
      expect(() => authorize(principal('read write admin list'), required, m), m).not.toThrow()
    }
    expect(() => authorize(principal('read'), required, 'HEAD')).toThrow(GatewayError)
    expect(() => authorize(principal('read list'), required, 'HEAD')).not.toThrow()
    const listed = routeScopes(rule(['read']), new Map([['POST', rule(['write'])]]), false)
    expect(() => authorize(principal('read'), listed, 'GET')).not.toThrow()
    expect(() => authorize(principal('read'), listed, 'HEAD')).not.toThrow()
  })
})
