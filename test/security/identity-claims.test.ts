import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFixture, standardConfig, type Fixture } from '../helpers/fixture.js'
import { bearer, send, type Echoed } from '../helpers/servers.js'

// An identity header must reach the upstream as exactly the claim: a value
// HTTP would trim, split or mangle refuses the token (401 claims_invalid),
// and nothing is forwarded.

let f: Fixture
beforeAll(async () => {
  f = await startFixture((jwks, up) => standardConfig(jwks, up, 'identity_headers:\n  claims: { profile: X-Profile }\n'))
})
afterAll(() => f.close())

async function refused(claims: Record<string, unknown>) {
  const before = f.upstream.received.length
  const res = await send(f.gw.url, { path: '/orders/1', headers: [bearer(await f.token(claims))] })
  expect(res.status).toBe(401)
  expect(res.headers['www-authenticate']).toContain('error="invalid_token"')
  expect((await f.gw.requestLog(res.headers['x-request-id'])).reason).toBe('claims_invalid')
  expect(f.upstream.received.length).toBe(before)
}

describe('claims that HTTP would alter', () => {
  for (const sub of ['  root  ', 'root ', '\troot', 'ro\u0000ot', 'root\r\nX-Admin: 1', 'jos\u00e9', '']) {
    if (sub === '') continue
    it(`sub ${JSON.stringify(sub)} is refused`, () => refused({ sub }))
  }
  it('a client_id with surrounding white space is refused', () => refused({ client_id: ' admin-app' }))
  it('an scp element holding a space (two scopes once joined) is refused', () => refused({ scope: undefined, scp: ['orders:read', 'orders:read admin'] }))
  it('a scope string with a tab is refused', () => refused({ scope: 'orders:read\tadmin' }))
  it('a scope with a quote or a non-ASCII character is refused', async () => {
    await refused({ scope: 'orders:read "admin"' })
    await refused({ scope: 'orders:read adm\u00efn' })
  })
  it('an extra claim whose string value has a control byte is refused', () => refused({ profile: 'a\u0007b' }))

  it('a non-string extra claim travels as ASCII JSON that decodes to exactly the claim', async () => {
    const profile = { name: 'Jos\u00e9 \u00c5ngstr\u00f6m', tags: ['\u2603', 'x'] }
    const res = await send(f.gw.url, { path: '/orders/1', headers: [bearer(await f.token({ profile }))] })
    expect(res.status).toBe(200)
    const raw = res.json<Echoed>().headers['x-profile'] as string
    expect(raw).toMatch(/^[\x20-\x7e]+$/)
    expect(JSON.parse(raw)).toEqual(profile)
  })

  it('ordinary claims still pass', async () => {
    const res = await send(f.gw.url, { path: '/orders/1', headers: [bearer(await f.token({ sub: 'user 42', scp: ['orders:read', 'x:y'] }))] })
    expect(res.status).toBe(200)
    expect(res.json<Echoed>().headers['x-subject']).toBe('user 42')
    expect(res.json<Echoed>().headers['x-scopes']).toBe('orders:read x:y')
  })
})

describe('claims named like what every object inherits', () => {
  // Identity headers name claims; a token that lacks `toString` or `constructor` must not send
  // what a JavaScript object inherits under that name (nor fail on it), fresh or from the cache.
  let g: Fixture
  beforeAll(async () => {
    g = await startFixture((jwks, up) => standardConfig(jwks, up, 'identity_headers:\n  claims: { toString: X-Tostring, constructor: X-Ctor, hasOwnProperty: X-Hop, valueOf: X-Valueof }\n'))
  })
  afterAll(() => g.close())

  it('are absent when the token lacks them, on the first request and from the verified-token cache', async () => {
    const token = await g.token({})
    for (let i = 0; i < 2; i++) {
      const res = await send(g.gw.url, { path: '/orders/1', headers: [bearer(token)] })
      expect(res.status).toBe(200)
      const headers = res.json<Echoed>().headers
      for (const name of ['x-tostring', 'x-ctor', 'x-hop', 'x-valueof']) expect(headers[name]).toBeUndefined()
    }
  })

  it('travel when the token holds them', async () => {
    const token = await g.token({ constructor: 'c-1', toString: 't-1' })
    for (let i = 0; i < 2; i++) {
      const res = await send(g.gw.url, { path: '/orders/1', headers: [bearer(token)] })
      expect(res.status).toBe(200)
      expect(res.json<Echoed>().headers['x-ctor']).toBe('c-1')
      expect(res.json<Echoed>().headers['x-tostring']).toBe('t-1')
    }
  })
})
