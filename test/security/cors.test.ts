import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { listen, bearer, send, type Listening } from '../helpers/servers.js'

// CORS: a preflight is answered by the gateway, without a token, and never
// reaches the upstream; it opens nothing (the actual request still needs its
// token). Only allowed origins, compared as whole serialised origins, get
// CORS headers; the upstream's own CORS headers never override the gateway's.

const ISS = 'https://idp.test.example'
let upstream: Listening & { hits: number }
let jwks: JwksServer
let key: TestKey
let g: TestGateway

beforeAll(async () => {
  let hits = 0
  const s = await listen((req, res) => {
    hits++
    // An upstream that answers CORS itself, too generously.
    res.setHeader('access-control-allow-origin', '*')
    res.setHeader('access-control-allow-credentials', 'true')
    res.setHeader('vary', 'Accept-Encoding')
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ secret: 'upstream data', method: req.method }))
  })
  upstream = Object.assign(s, { get hits() { return hits } })
  key = await makeKey('ES256')
  jwks = await startJwksServer([key.publicJwk])
  g = await startGateway(`
upstreams: { api: { url: "${upstream.url}" } }
issuers:
  - { id: idp, issuer: ${ISS}, jwks_uri: ${jwks.jwksUri}, audiences: [api] }
cors:
  allowed_origins: ["https://app.example", "https://*.apps.example", "http://localhost:3000"]
  allowed_headers: [Authorization, Content-Type]
  allow_credentials: true
routes:
  - id: orders
    match: { path: /orders/*, methods: [GET, POST] }
    upstream: api
    auth: { issuers: [idp], scopes: { all_of: [orders:read] } }
  - id: open-data
    match: { path: /open/*, methods: [GET] }
    upstream: api
    auth: public
    cors: { allowed_origins: ["*"] }
  - id: no-cors
    match: { path: /internal/* }
    upstream: api
    auth: { issuers: [idp], scopes: none }
    cors: false
`)
})
afterAll(async () => {
  await g.close()
  await upstream.close()
  await jwks.close()
})

const token = () => sign(key, { iss: ISS, aud: 'api', sub: 'u1', scope: 'orders:read', exp: Math.floor(Date.now() / 1000) + 600 })
const preflight = (origin: string, method = 'GET', headers?: string, path = '/orders/1') =>
  send(g.url, { method: 'OPTIONS', path, headers: [['Origin', origin], ['Access-Control-Request-Method', method], ...(headers ? [['Access-Control-Request-Headers', headers] as [string, string]] : [])] })
const corsHeaderNames = (h: Record<string, unknown>) => Object.keys(h).filter((k) => k.startsWith('access-control-'))

describe('preflight', () => {
  it('is answered by the gateway without a token, and never forwarded', async () => {
    const before = upstream.hits
    const res = await preflight('https://app.example', 'POST', 'authorization, content-type')
    expect(res.status).toBe(204)
    expect(res.body).toBe('')
    expect(res.headers).toMatchObject({
      'access-control-allow-origin': 'https://app.example',
      'access-control-allow-methods': 'GET, POST',
      'access-control-allow-headers': 'Authorization, Content-Type',
      'access-control-allow-credentials': 'true',
      'access-control-max-age': '600',
    })
    expect(res.headers.vary).toContain('Origin')
    expect(upstream.hits).toBe(before)
  })

  it('origins that are not exactly an allowed one are refused, with no CORS headers', async () => {
    const before = upstream.hits
    for (const origin of [
      'https://evil.example',
      'https://app.example.evil.example',
      'https://evilapp.example',
      'http://app.example',
      'https://app.example:8443',
      'https://app.example/',
      'https://app.example/path',
      'https://app.example.',
      'https://user@app.example',
      'https://app.example, https://evil.example',
      'null',
      '*',
      'https://apps.example',
      'https://x.apps.example.evil.example',
      'https://evil-apps.example',
      'http://x.apps.example',
      'http://localhost:3001',
      'http://localhost',
      'file://',
    ]) {
      const res = await preflight(origin)
      expect(res.status, origin).toBe(403)
      expect(corsHeaderNames(res.headers), origin).toEqual([])
    }
    expect(upstream.hits).toBe(before)
  })

  it('spellings of an allowed origin are that origin; subdomains match the wildcard', async () => {
    for (const origin of ['https://APP.example', 'https://app.example:443', 'https://a.apps.example', 'https://a.b.apps.example', 'http://localhost:3000']) {
      const res = await preflight(origin)
      expect(res.status, origin).toBe(204)
    }
  })

  it('methods and headers outside the policy are refused', async () => {
    for (const [method, headers] of [['DELETE', undefined], ['PUT', undefined], ['get', undefined], ['GET', 'authorization, x-admin'], ['POST', 'cookie'], ['GET', 'authorization,,x-forwarded-for']] as const) {
      const res = await preflight('https://app.example', method, headers)
      expect([403, 401, 404, 405], `${method} ${headers}`).toContain(res.status)
      expect(corsHeaderNames(res.headers), `${method} ${headers}`).toEqual([])
    }
  })

  it('an OPTIONS with a body, or without Access-Control-Request-Method, is not a preflight: it needs a token', async () => {
    const before = upstream.hits
    const withBody = await send(g.url, { method: 'OPTIONS', path: '/orders/1', headers: [['Origin', 'https://app.example'], ['Access-Control-Request-Method', 'GET'], ['Content-Length', '2']], body: '{}' })
    expect(withBody.status).not.toBe(204)
    const plain = await send(g.url, { method: 'OPTIONS', path: '/orders/1', headers: [['Origin', 'https://app.example']] })
    expect(plain.status).not.toBe(204)
    expect(upstream.hits).toBe(before)
  })

  it('a route with cors: false answers no preflight: the OPTIONS request is held to its token', async () => {
    const res = await preflight('https://app.example', 'GET', undefined, '/internal/1')
    expect(res.status).toBe(401)
    expect(corsHeaderNames(res.headers)).toEqual([])
  })
})

describe('actual requests', () => {
  it('need their token; the refusal is readable by an allowed origin', async () => {
    const before = upstream.hits
    const res = await send(g.url, { path: '/orders/1', headers: [['Origin', 'https://app.example']] })
    expect(res.status).toBe(401)
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example')
    expect(res.headers['access-control-expose-headers']).toContain('WWW-Authenticate')
    expect(upstream.hits).toBe(before)
  })

  it('with a token: the gateway\'s CORS headers replace the upstream\'s, Vary is joined', async () => {
    const res = await send(g.url, { path: '/orders/1', headers: [['Origin', 'https://app.example'], bearer(await token())] })
    expect(res.status).toBe(200)
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example')
    expect(res.headers['access-control-allow-credentials']).toBe('true')
    expect(res.headers.vary).toBe('Accept-Encoding, Origin')
  })

  it('from another origin: no CORS headers at all, the upstream\'s "*" included', async () => {
    for (const origin of ['https://evil.example', 'null', 'https://app.example.evil.example']) {
      const res = await send(g.url, { path: '/orders/1', headers: [['Origin', origin], bearer(await token())] })
      expect(res.status).toBe(200)
      expect(corsHeaderNames(res.headers), origin).toEqual([])
      expect(res.headers.vary).toBe('Accept-Encoding, Origin')
    }
  })

  it('"*" without credentials answers "*" and never allows credentials', async () => {
    const res = await send(g.url, { path: '/open/1', headers: [['Origin', 'https://anyone.example']] })
    expect(res.headers['access-control-allow-origin']).toBe('*')
    expect(res.headers['access-control-allow-credentials']).toBeUndefined()
    const pre = await preflight('https://anyone.example', 'GET', undefined, '/open/1')
    expect(pre.status).toBe(204)
    expect(pre.headers['access-control-allow-origin']).toBe('*')
  })

  it('on a route with cors: false the upstream\'s own headers pass through untouched', async () => {
    const res = await send(g.url, { path: '/internal/1', headers: [['Origin', 'https://app.example'], bearer(await token())] })
    expect(res.headers['access-control-allow-origin']).toBe('*')
  })
})
