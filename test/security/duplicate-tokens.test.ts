import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFixture, type Fixture } from '../helpers/fixture.js'
import { bearer, send, type RawResponse } from '../helpers/servers.js'

// One token per request (RFC 6750 §2): the gateway must verify the very token
// the backend will act on, so any second credential is a 400.

let f: Fixture
let good: string
let other: string
beforeAll(async () => {
  f = await startFixture()
  good = await f.token({ scope: 'orders:read orders:write' })
  other = await f.token({ scope: 'admin', sub: 'someone-else' })
})
afterAll(() => f.close())

async function expectInvalidRequest(res: RawResponse, reason: string) {
  expect(res.status).toBe(400)
  expect(res.headers['www-authenticate']).toMatch(/^Bearer realm="gateway", error="invalid_request", error_description="[^"]+"$/)
  expect(res.json()).toMatchObject({ error: 'invalid_request' })
  expect((await f.gw.requestLog(res.headers['x-request-id'])).reason).toBe(reason)
}

describe('a second credential', () => {
  it('two Authorization headers (Node would silently keep only the first)', async () => {
    await expectInvalidRequest(await send(f.gw.url, { path: '/orders/1', headers: [bearer(good), bearer(other)] }), 'token_duplicated')
    await expectInvalidRequest(await send(f.gw.url, { path: '/orders/1', headers: [bearer(good), ['authorization', `Bearer ${good}`]] }), 'token_duplicated')
    await expectInvalidRequest(await send(f.gw.url, { path: '/orders/1', headers: [bearer(good), ['AUTHORIZATION', 'Basic dTpw']] }), 'token_duplicated')
  })

  it('a header token plus access_token in the query, however it is spelled', async () => {
    for (const q of [`access_token=${other}`, `a=1&access_token=${other}`, `%61ccess_token=${other}`, `access%5Ftoken=${other}`, `ACCESS_TOKEN=${other}`, 'access_token',
      // names PHP, qs, Rack and Rails read as access_token
      `access.token=${other}`, `access%20token=${other}`, `access+token=${other}`, `access[token=${other}`, `access_token[]=${other}`,
      `access_token[0]=${other}`, `access_token[x]=${other}`, `%20access_token=${other}`, `access_token%00x=${other}`, `Access.Token[]=${other}`]) {
      await expectInvalidRequest(await send(f.gw.url, { path: `/orders/1?${q}`, headers: [bearer(good)] }), 'token_duplicated')
    }
  })

  it('a header token plus access_token in a form body', async () => {
    const res = await send(f.gw.url, {
      method: 'POST',
      path: '/orders',
      headers: [bearer(good), ['Content-Type', 'application/x-www-form-urlencoded; charset=utf-8']],
      body: `item=1&access_token=${other}`,
    })
    await expectInvalidRequest(res, 'token_duplicated')
  })

  it('a token only in the query or body is not accepted', async () => {
    await expectInvalidRequest(await send(f.gw.url, { path: `/orders/1?access_token=${good}` }), 'token_location_unsupported')
    // No header token: refused from the headers, the body is never read.
    const res = await send(f.gw.url, {
      method: 'POST',
      path: '/orders',
      headers: [['Content-Type', 'application/x-www-form-urlencoded']],
      body: `access_token=${good}`,
    })
    expect(res.status).toBe(401)
    expect(res.headers.connection).toBe('close')
  })

  it('a header token plus access_token in a form body, under every name frameworks read as access_token', async () => {
    for (const name of ['access_token', 'ACCESS_TOKEN', 'access.token', 'access%20token', 'access[token', 'access_token[]', '%61ccess_token']) {
      const res = await send(f.gw.url, {
        method: 'POST',
        path: '/orders',
        headers: [bearer(good), ['Content-Type', 'Application/X-WWW-Form-Urlencoded']],
        body: `item=1&${name}=${other}`,
      })
      await expectInvalidRequest(res, 'token_duplicated')
    }
  })

  it('a form body with a Content-Encoding is refused (415) where the body is checked: its content cannot be read as it stands', async () => {
    const { gzipSync, deflateSync } = await import('node:zlib')
    for (const [coding, body] of [['gzip', gzipSync(`access_token=${other}`)], ['deflate', deflateSync(`access_token=${other}`)], ['br', Buffer.from('x')]] as const) {
      const before = f.upstream.received.length
      const res = await send(f.gw.url, {
        method: 'POST',
        path: '/orders',
        headers: [bearer(good), ['Content-Type', 'application/x-www-form-urlencoded'], ['Content-Encoding', coding]],
        body,
      })
      expect(res.status, coding).toBe(415)
      expect(f.upstream.received.length).toBe(before)
    }
  })

  it('a malformed Bearer credential is a bad request', async () => {
    for (const value of ['Bearer', 'Bearer ', `Bearer ${good} extra`, `Bearer\t${good}`, 'Bearer a,b', `Bearer  ${good}x"`]) {
      await expectInvalidRequest(await send(f.gw.url, { path: '/orders/1', headers: [['Authorization', value]] }), 'authorization_malformed')
    }
  })

  it('another scheme is no bearer token at all', async () => {
    const res = await send(f.gw.url, { path: '/orders/1', headers: [['Authorization', 'Basic dXNlcjpwYXNz']] })
    expect(res.status).toBe(401)
    expect(res.headers['www-authenticate']).toBe('Bearer realm="gateway"')
  })

  it('a form body without access_token is forwarded whole', async () => {
    const res = await send(f.gw.url, {
      method: 'POST',
      path: '/orders',
      headers: [bearer(good), ['Content-Type', 'application/x-www-form-urlencoded']],
      body: 'item=1&note=access_token_like',
    })
    expect(res.status).toBe(200)
    expect(res.json<{ body: string }>().body).toBe('item=1&note=access_token_like')
  })
})
