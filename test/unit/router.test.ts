import { describe, expect, it } from 'vitest'
import { parsePattern, PatternError } from '../../src/pipeline/match/pattern.js'
import { RouteConflictError, Router, type RouteSpec } from '../../src/pipeline/match/router.js'

function route(id: string, path: string, methods: string[] | null = null, host: string | null = null): RouteSpec {
  return { id, methods, host, pattern: parsePattern(path) }
}

function matcher(...routes: RouteSpec[]) {
  const router = new Router(routes)
  return (method: string, path: string, host = 'api.example.com') => router.match(method, host, path)?.route.id ?? null
}

describe('path patterns', () => {
  it('parses static, param and wildcard segments', () => {
    expect(parsePattern('/a/:id/*').segments).toEqual([{ kind: 'static', value: 'a' }, { kind: 'param', name: 'id' }, { kind: 'wildcard' }])
    expect(parsePattern('/a/:x').shapeKey).toBe(parsePattern('/a/:y/').shapeKey)
    expect(parsePattern('/%7Eme').segments).toEqual([{ kind: 'static', value: '~me' }])
  })

  it('refuses malformed patterns', () => {
    for (const p of ['a', '/a/*/b', '/:', '/:1x', '/:a/:a', '/a*', '/a;b', '/a\\b', '/../a', '/%2e%2e', '/a b']) {
      expect(() => parsePattern(p), p).toThrow(PatternError)
    }
  })
})

describe('route precedence', () => {
  const match = matcher(
    route('catch-all', '/*'),
    route('orders-any', '/orders/*'),
    route('order', '/orders/:id', ['GET']),
    route('order-write', '/orders/:id', ['PUT', 'DELETE']),
    route('orders-search', '/orders/search', ['GET']),
    route('items', '/orders/:id/items/*'),
    route('host-orders', '/orders/:id', ['GET'], 'admin.example.com'),
    route('wild-host', '/*', null, '*.internal.example'),
  )

  it('prefers static over param over wildcard', () => {
    expect(match('GET', '/orders/search')).toBe('orders-search')
    expect(match('GET', '/orders/42')).toBe('order')
    expect(match('GET', '/orders/42/x')).toBe('orders-any')
    expect(match('GET', '/orders/42/items/1/2')).toBe('items')
    expect(match('GET', '/elsewhere')).toBe('catch-all')
  })

  it('a wildcard covers the node itself and any trailing slash', () => {
    expect(match('GET', '/orders')).toBe('orders-any')
    expect(match('GET', '/orders/')).toBe('orders-any')
    expect(match('GET', '/orders/42/items')).toBe('items')
    expect(match('GET', '/')).toBe('catch-all')
  })

  it('chooses by method, falling back to less specific patterns', () => {
    expect(match('PUT', '/orders/42')).toBe('order-write')
    expect(match('POST', '/orders/42')).toBe('orders-any')
    expect(match('POST', '/orders/search')).toBe('orders-any')
  })

  it('prefers routes of the exact host, then wildcard hosts, then any host', () => {
    expect(match('GET', '/orders/42', 'admin.example.com')).toBe('host-orders')
    expect(match('GET', '/orders/search', 'admin.example.com')).toBe('host-orders')
    expect(match('GET', '/orders/42', 'a.internal.example')).toBe('wild-host')
    expect(match('GET', '/orders/42', 'internal.example')).toBe('order')
  })

  it('reports params', () => {
    const router = new Router([route('r', '/a/:x/b/:y/*')])
    expect(router.match('GET', 'h', '/a/1/b/2/c/d')?.params).toEqual({ x: '1', y: '2' })
  })

  it('returns nothing when no route fits', () => {
    const m = matcher(route('only', '/only', ['GET']))
    expect(m('GET', '/other')).toBeNull()
    expect(m('POST', '/only')).toBeNull()
    expect(m('GET', '/only/more')).toBeNull()
  })
})

describe('route conflicts', () => {
  it('refuses two routes matching exactly the same requests', () => {
    expect(() => new Router([route('a', '/x/:id'), route('b', '/x/:other/')])).toThrow(RouteConflictError)
    expect(() => new Router([route('a', '/x', ['GET', 'POST']), route('b', '/x', ['POST'])])).toThrow(/"a" and "b" both match POST/)
    expect(() => new Router([route('a', '/x/*', null, 'h.example'), route('b', '/x/*', null, 'h.example')])).toThrow(RouteConflictError)
  })

  it('allows the same pattern with other methods or hosts', () => {
    expect(() => new Router([route('a', '/x', ['GET']), route('b', '/x', ['POST']), route('c', '/x'), route('d', '/x', null, 'h.example')])).not.toThrow()
  })
})
