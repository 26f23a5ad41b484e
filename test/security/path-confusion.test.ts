import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFixture, type Fixture } from '../helpers/fixture.js'
import { bearer, send, type Echoed } from '../helpers/servers.js'

// The path that is authorized is the path that is forwarded: a public prefix
// must never lead a backend to a protected resource.

let f: Fixture
beforeAll(async () => {
  f = await startFixture()
})
afterAll(() => f.close())

async function status(path: string, headers: Array<[string, string]> = []): Promise<number> {
  const before = f.upstream.received.length
  const res = await send(f.gw.url, { path, headers })
  if (res.status >= 400) expect(f.upstream.received.length, `${path} reached the upstream`).toBe(before)
  return res.status
}

describe('traversal from a public route into a protected one', () => {
  const intoAdmin = [
    '/public/../admin/users',
    '/public/%2e%2e/admin/users',
    '/public/%2E%2E/admin/users',
    '/public/.%2e/admin/users',
    '/public/%2e./admin/users',
    '/public/x/../../admin/users',
    '//admin/users',
    '/./admin/users',
    '/public/../../../admin/users',
    '/%61dmin/users',
    '/admin',
    '/admin/',
    '/public/..',
  ]
  for (const path of intoAdmin) {
    it(`${path} is authorized as the admin route it resolves to`, async () => {
      const expected = path === '/public/..' ? 404 : 401
      expect(await status(path)).toBe(expected)
    })
  }

  const ambiguous = [
    '/public/..%2fadmin/users',
    '/public/..%2Fadmin/users',
    '/public%2f..%2fadmin/users',
    '/public/..%5cadmin/users',
    '/public/..\\admin/users',
    '/public\\..\\admin\\users',
    '/public/%00/../admin',
    '/public/x%00',
    '/public/..;/admin/users',
    '/public;/../admin/users',
    '/admin;jsessionid=1/users',
    '/public/%3b/admin',
    '/public/%c0%ae%c0%ae/admin/users',
    '/public/%e0%80%ae/admin',
    '/public/%zz',
    '/public/%2',
    '/public/x%',
  ]
  for (const path of ambiguous) {
    it(`${JSON.stringify(path)} is refused with 400`, async () => {
      expect(await status(path)).toBe(400)
    })
  }

  it('refuses targets that are not an absolute path', async () => {
    expect(await status('http://127.0.0.1/admin/users')).toBe(400)
    expect(await status('*', [])).toBeGreaterThanOrEqual(400)
  })
})

describe('what is forwarded is what was matched', () => {
  it('forwards the canonical path that was authorized', async () => {
    const token = await f.token({ scope: 'admin' })
    const res = await send(f.gw.url, { path: '/public/%2e%2e//admin/./users/x/..', headers: [bearer(token)] })
    expect(res.status).toBe(200)
    expect(res.json<Echoed>().url).toBe('/admin/users/') // RFC 3986 §5.2.4 keeps the slash
    expect((await f.gw.requestLog(res.headers['x-request-id'])).route).toBe('admin')
  })

  it('decodes unreserved characters and keeps other encodings', async () => {
    const res = await send(f.gw.url, { path: '/public/%7euser/a%20b/%C3%A9/caf%c3%a9' })
    expect(res.json<Echoed>().url).toBe('/public/~user/a%20b/%C3%A9/caf%C3%A9')
  })

  it('never matches on the query string, and forwards it untouched', async () => {
    const res = await send(f.gw.url, { path: '/public/x?/../admin/users&next=%2Fadmin' })
    expect(res.status).toBe(200)
    expect(res.json<Echoed>().url).toBe('/public/x?/../admin/users&next=%2Fadmin')
    expect(await status('/nothing?/public/x')).toBe(404)
  })

  it('anchors patterns: a route prefix inside another path does not match', async () => {
    expect(await status('/x/public/y')).toBe(404)
    expect(await status('/publicity')).toBe(404)
  })
})
