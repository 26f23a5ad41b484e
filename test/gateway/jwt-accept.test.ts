import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFixture, ISSUER, type Fixture } from '../helpers/fixture.js'
import { bearer, send, type Echoed } from '../helpers/servers.js'

let f: Fixture
beforeAll(async () => {
  f = await startFixture()
})
afterAll(() => f.close())

describe('a valid JWT reaches the upstream with identity headers', () => {
  for (const alg of ['RS256', 'ES256', 'EdDSA'] as const) {
    it(`accepts ${alg}`, async () => {
      const token = await f.token({ scope: 'orders:read other' }, { alg })
      const res = await send(f.gw.url, { path: '/orders/42?x=1&y=%2F', headers: [bearer(token)] })
      expect(res.status).toBe(200)
      const echoed = res.json<Echoed>()
      expect(echoed.url).toBe('/orders/42?x=1&y=%2F')
      expect(echoed.headers['x-client-id']).toBe('client-1')
      expect(echoed.headers['x-subject']).toBe('user-1')
      expect(echoed.headers['x-scopes']).toBe('orders:read other')
      expect(echoed.headers['x-issuer']).toBe(ISSUER)
      expect(echoed.headers.authorization).toBeUndefined()
    })
  }

  it('reads scp as an array and azp when client_id is absent', async () => {
    const token = await f.token({ scope: undefined, scp: ['orders:read'], client_id: undefined, azp: 'azp-client' })
    const res = await send(f.gw.url, { path: '/orders/1', headers: [bearer(token)] })
    expect(res.status).toBe(200)
    expect(res.json<Echoed>().headers['x-client-id']).toBe('azp-client')
  })

  it('accepts an array aud naming one accepted audience', async () => {
    const token = await f.token({ aud: ['unrelated', 'other-api'] })
    const res = await send(f.gw.url, { path: '/orders/1', headers: [bearer(token)] })
    expect(res.status).toBe(200)
  })

  it('accepts the scheme in any case', async () => {
    const token = await f.token()
    const res = await send(f.gw.url, { path: '/orders/1', headers: [['authorization', `bEaReR ${token}`]] })
    expect(res.status).toBe(200)
  })

  it('enforces per-method scopes in addition to the route scopes', async () => {
    const readOnly = await f.token({ scope: 'orders:read' })
    const post = await send(f.gw.url, { method: 'POST', path: '/orders', headers: [bearer(readOnly), ['content-type', 'application/json']], body: '{"a":1}' })
    expect(post.status).toBe(403)
    expect(post.headers['www-authenticate']).toBe(
      'Bearer realm="gateway", error="insufficient_scope", error_description="the token lacks a scope this route requires", scope="orders:write"',
    )
    expect(post.json()).toMatchObject({ error: 'insufficient_scope' })

    const writer = await f.token({ scope: 'orders:read orders:write' })
    const ok = await send(f.gw.url, { method: 'POST', path: '/orders', headers: [bearer(writer), ['content-type', 'application/json']], body: '{"a":1}' })
    expect(ok.status).toBe(200)
    expect(ok.json<Echoed>().body).toBe('{"a":1}')

    const writeOnly = await f.token({ scope: 'orders:write' })
    expect((await send(f.gw.url, { method: 'POST', path: '/orders', headers: [bearer(writeOnly)], body: 'x' })).status).toBe(403)
  })

  it('any_of: one of the scopes is enough', async () => {
    const admin = await f.token({ scope: 'orders:read admin' })
    expect((await send(f.gw.url, { method: 'DELETE', path: '/orders/1', headers: [bearer(admin)] })).status).toBe(200)
    const none = await f.token({ scope: 'orders:read' })
    const res = await send(f.gw.url, { method: 'DELETE', path: '/orders/1', headers: [bearer(none)] })
    expect(res.status).toBe(403)
    expect(res.headers['www-authenticate']).toContain('scope="orders:admin admin"')
  })

  it('answers 401 without an error code when no token is sent', async () => {
    const res = await send(f.gw.url, { path: '/orders/1' })
    expect(res.status).toBe(401)
    expect(res.headers['www-authenticate']).toBe('Bearer realm="gateway"')
    expect(res.json()).toMatchObject({ error: 'unauthorized' })
    expect(f.upstream.received.some((r) => r.url === '/orders/1' && !r.headers['x-client-id'])).toBe(false)
  })

  it('answers 404 when no route matches, and forwards nothing', async () => {
    const before = f.upstream.received.length
    const res = await send(f.gw.url, { path: '/nowhere' })
    expect(res.status).toBe(404)
    expect(res.json()).toMatchObject({ error: 'not_found' })
    expect(f.upstream.received.length).toBe(before)
  })

  it('serves public routes without a token', async () => {
    const res = await send(f.gw.url, { path: '/public/info' })
    expect(res.status).toBe(200)
    expect(res.headers['x-request-id']).toBeTruthy()
  })
})
