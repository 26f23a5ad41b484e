import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ISSUER, AUDIENCE, type Fixture, startFixture } from '../helpers/fixture.js'
import { bearer, send } from '../helpers/servers.js'

// Method rules are total: a method nobody named is held to the strictest
// rule, HEAD never falls through to a public catch-all when GET's route is
// protected, TRACE goes nowhere unless a route names it, and a method
// override cannot get a request past the rules of the method it claims.

let f: Fixture
beforeAll(async () => {
  f = await startFixture(
    (jwks, up) => `
upstreams: { up: { url: "${up}" } }
issuers: [{ id: corp, issuer: "${ISSUER}", jwks_uri: "${jwks}", audiences: [${AUDIENCE}] }]
routes:
  - id: any-method
    match: { path: /items/* }
    upstream: up
    auth:
      issuers: [corp]
      scopes: none
      method_scopes:
        POST: { all_of: [items:write] }
        DELETE: { all_of: [items:admin] }
  - id: docs-read
    match: { path: /docs/*, methods: [GET] }
    upstream: up
    auth: { issuers: [corp], scopes: { all_of: [docs:read] } }
  - id: everything-else
    match: { path: /* }
    upstream: up
    auth: public
  - id: overridable
    match: { path: /legacy/*, methods: [POST, DELETE] }
    upstream: up
    method_override: allow
    auth:
      issuers: [corp]
      scopes: none
      method_scopes:
        DELETE: { all_of: [legacy:admin] }
  - id: tracing
    match: { path: /trace-me, methods: [TRACE] }
    upstream: up
    auth: public
`,
  )
})
afterAll(() => f.close())

const token = (scope: string) => f.token({ scope })
const reasonOf = async (res: { headers: Record<string, unknown> }) => (await f.gw.requestLog(res.headers['x-request-id'] as string)).reason

describe('methods nobody named', () => {
  for (const method of ['TRACE', 'QUERY', 'PROPFIND', 'PUT', 'PATCH', 'OPTIONS', 'MKCOL', 'LOCK']) {
    it(`${method} on an every-method route needs every named rule`, async () => {
      const json: [string, string] = ['Content-Type', 'application/json']
      const weak = await send(f.gw.url, { method, path: '/items/1', headers: [json, bearer(await token('items:write'))] })
      expect(weak.status, method).toBe(method === 'TRACE' ? 405 : 403)
      if (method !== 'TRACE') {
        const strong = await send(f.gw.url, { method, path: '/items/1', headers: [json, bearer(await token('items:write items:admin'))] })
        expect(strong.status, method).toBe(200)
      }
    })
  }

  it('HEAD is held to GET\'s rule and never falls through to the public catch-all', async () => {
    const anon = await send(f.gw.url, { method: 'HEAD', path: '/docs/secret' })
    expect(anon.status).toBe(401)
    const weak = await send(f.gw.url, { method: 'HEAD', path: '/docs/secret', headers: [bearer(await token('other'))] })
    expect(weak.status).toBe(403)
    const ok = await send(f.gw.url, { method: 'HEAD', path: '/docs/secret', headers: [bearer(await token('docs:read'))] })
    expect(ok.status).toBe(200)
  })

  it('TRACE is refused (405) unless a route names it, and the upstream never sees it', async () => {
    const before = f.upstream.received.length
    const res = await send(f.gw.url, { method: 'TRACE', path: '/anything', headers: [['Cookie', 'session=secret']] })
    expect(res.status).toBe(405)
    expect(f.upstream.received.length).toBe(before)
    expect((await send(f.gw.url, { method: 'TRACE', path: '/trace-me' })).status).toBe(200)
  })
})

describe('method overrides', () => {
  const overrides: Array<[string, Array<[string, string]>, string]> = [
    ['X-HTTP-Method-Override', [['X-HTTP-Method-Override', 'DELETE']], ''],
    ['x_http_method_override', [['x_http_method_override', 'DELETE']], ''],
    ['X-HTTP-Method', [['X-HTTP-Method', 'delete']], ''],
    ['X-Method-Override', [['X.Method.Override', 'DELETE']], ''],
    ['_method in the query', [], '?_method=DELETE'],
    ['_METHOD in the query', [], '?_METHOD=delete'],
    ['%5Fmethod in the query', [], '?%5Fmethod=DELETE'],
    ['_method[] in the query', [], '?_method[]=DELETE'],
    ['" _method" in the query', [], '?%20_method=DELETE'],
  ]
  for (const [what, headers, query] of overrides) {
    it(`${what} is refused (400) on a route whose rules depend on the method`, async () => {
      const before = f.upstream.received.length
      const res = await send(f.gw.url, { method: 'POST', path: `/items/1${query}`, headers: [...headers, bearer(await token('items:write'))] })
      expect(res.status).toBe(400)
      expect(await reasonOf(res)).toBe('method_override_refused')
      expect(f.upstream.received.length).toBe(before)
    })
  }

  it('is refused on a GET-only route too (the upstream would act on another method)', async () => {
    const res = await send(f.gw.url, { path: '/docs/x', headers: [['X-HTTP-Method-Override', 'DELETE'], bearer(await token('docs:read'))] })
    expect(res.status).toBe(400)
  })

  it('is left alone where nothing depends on the method', async () => {
    const { startGateway } = await import('../helpers/gateway.js')
    const g = await startGateway(`
upstreams: { up: { url: "${f.upstream.url}" } }
routes: [{ id: open, match: { path: /open/* }, upstream: up, auth: public }]
`)
    try {
      expect((await send(g.url, { method: 'POST', path: '/open/x?_method=DELETE' })).status).toBe(200)
    } finally {
      await g.close()
    }
  })

  it('where allowed, the request is authorized as both methods and the upstream is told the override', async () => {
    const weak = await send(f.gw.url, { method: 'POST', path: '/legacy/1', headers: [['X-HTTP-Method-Override', 'DELETE'], bearer(await token('x'))] })
    expect(weak.status).toBe(403)
    const strong = await send(f.gw.url, { method: 'POST', path: '/legacy/1', headers: [['X-HTTP-Method-Override', 'DELETE'], bearer(await token('legacy:admin'))] })
    expect(strong.status).toBe(200)
    expect(strong.json<{ headers: Record<string, string> }>().headers['x-http-method-override']).toBe('DELETE')
    // A method this route does not serve cannot be claimed.
    const other = await send(f.gw.url, { method: 'POST', path: '/legacy/1?_method=PUT', headers: [bearer(await token('legacy:admin'))] })
    expect(other.status).toBe(400)
    // Two overrides that disagree.
    const two = await send(f.gw.url, { method: 'POST', path: '/legacy/1?_method=POST', headers: [['X-HTTP-Method-Override', 'DELETE'], bearer(await token('legacy:admin'))] })
    expect(two.status).toBe(400)
  })
})
