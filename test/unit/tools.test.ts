import { describe, expect, it } from 'vitest'
import { compileConfig } from '../../src/config/compile.js'
import { parseConfig } from '../../src/config/load.js'
import { explain } from '../../src/tools/explain.js'
import { routeTable } from '../../src/tools/routes.js'

const YAML = `
upstreams: { api: { url: "http://api.internal:8080/v1" } }
issuers: [{ id: corp, issuer: "https://corp.example", jwks_uri: "https://corp.example/jwks", audiences: [api] }]
routes:
  - { id: catch-all, match: { path: "/*" }, upstream: api, auth: public }
  - { id: orders-any, match: { path: /orders/* }, upstream: api, auth: { issuers: [corp], scopes: { all_of: [orders:read] } } }
  - { id: order, match: { path: "/orders/:id", methods: [GET] }, upstream: api, auth: { issuers: [corp], scopes: { all_of: [orders:read] } } }
  - id: order-write
    match: { path: "/orders/:id", methods: [PUT, DELETE] }
    upstream: api
    strip_prefix: /orders
    auth: { issuers: [corp], scopes: { any_of: [orders:write, admin] }, method_scopes: { DELETE: { all_of: [admin] } } }
  - { id: search, match: { path: /orders/search, methods: [GET] }, upstream: api, auth: { issuers: [corp], scopes: none } }
  - { id: admin-host, match: { path: "/*", host: admin.example.com }, upstream: api, auth: { issuers: [corp], scopes: { all_of: [admin] } } }
`
const config = () => compileConfig(parseConfig(YAML, 'g.yaml', {}))

describe('gateway routes', () => {
  it('prints the route table in the order the router tries it', async () => {
    const table = routeTable(await config())
    const ids = table.trim().split('\n').slice(1).map((l) => l.split(/\s+/)[0])
    expect(ids).toEqual(['admin-host', 'search', 'order', 'order-write', 'orders-any', 'catch-all'])
    expect(table).toContain('corp(jwt): any of orders:write admin; DELETE: all of admin')
    expect(table).toContain('api http://api.internal:8080/v1 (strip /orders)')
  })
})

describe('gateway explain', () => {
  it('says which route matches, what it requires and why it allows', async () => {
    const r = await explain(await config(), { method: 'GET', path: '/public/../orders/7?x=1', scopes: ['orders:read'] })
    expect(r).toMatchObject({ decision: 'allow', reason: 'ok' })
    expect(r.lines).toEqual([
      'request: GET /orders/7?x=1',
      'route: order (GET /orders/:id)',
      'params: {"id":"7"}',
      'requires: corp(jwt): all of orders:read',
      'token: assumed valid, with scopes orders:read',
      'decision: allow → forwarded to http://api.internal:8080/v1/orders/7?x=1',
    ])
  })

  it('says what is missing when it denies', async () => {
    const r = await explain(await config(), { method: 'DELETE', path: '/orders/7', scopes: ['orders:write'] })
    expect(r).toMatchObject({ decision: 'deny', status: 403, reason: 'scope_insufficient' })
    expect(r.lines).toContain('missing: admin')
  })

  it('explains path refusals, missing routes and hosts', async () => {
    expect(await explain(await config(), { method: 'GET', path: '/a%2fb', scopes: [] })).toMatchObject({ decision: 'deny', status: 400, reason: 'path_invalid' })
    const host = await explain(await config(), { method: 'GET', path: '/orders/1', host: 'admin.example.com', scopes: ['orders:read'] })
    expect(host).toMatchObject({ decision: 'deny', reason: 'scope_insufficient' })
    expect(host.lines[1]).toBe('route: admin-host (any method /* on admin.example.com)')
    // The host is read as the gateway reads it: any case, with or without the root dot.
    const spelled = await explain(await config(), { method: 'GET', path: '/orders/1', host: 'Admin.Example.com.', scopes: ['orders:read'] })
    expect(spelled.lines[1]).toBe('route: admin-host (any method /* on admin.example.com)')
    expect(await explain(await config(), { method: 'GET', path: '/anything' })).toMatchObject({ decision: 'allow' })
  })

  it('authenticates a real token when given one', async () => {
    const r = await explain(await config(), { method: 'GET', path: '/orders/1', token: 'not-a-jwt' })
    expect(r).toMatchObject({ decision: 'deny', status: 401, reason: 'token_malformed' })
  })
})
