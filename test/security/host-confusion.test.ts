import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { send, startEchoUpstream, type Echoed, type Listening } from '../helpers/servers.js'

// A route bound to a host must catch every spelling of that host a backend
// could treat as the same; client-sent X-Forwarded-Host must not steer routing.

let upstream: Listening
let g: TestGateway
beforeAll(async () => {
  upstream = await startEchoUpstream()
  g = await startGateway(`
upstreams: { api: { url: "${upstream.url}" } }
issuers: [{ id: i, issuer: "https://i.example", jwks_uri: "http://127.0.0.1:1/jwks", audiences: [a] }]
routes:
  - { id: public, match: { path: "/*" }, upstream: api, auth: public }
  - { id: admin, match: { path: "/*", host: admin.example.com }, upstream: api, auth: { issuers: [i], scopes: none } }
`)
})
afterAll(async () => {
  await g.close()
  await upstream.close()
})

const route = async (host: string, extra: Array<[string, string]> = []) => {
  const res = await send(g.url, { path: '/x', headers: [['Host', host], ...extra] })
  return { status: res.status, route: (await g.requestLog(res.headers['x-request-id'])).route, res }
}

describe('host-bound routes', () => {
  for (const host of ['admin.example.com', 'ADMIN.example.COM', 'admin.example.com.', 'admin.example.com:8443', 'Admin.Example.Com.:80']) {
    it(`${host} reaches the protected admin route`, async () => {
      expect(await route(host)).toMatchObject({ status: 401, route: 'admin' })
    })
  }

  it('other hosts take the public route', async () => {
    expect(await route('www.example.com')).toMatchObject({ status: 200, route: 'public' })
    expect(await route('admin.example.com.evil.test')).toMatchObject({ status: 200, route: 'public' })
  })

  it('a client-sent X-Forwarded-Host neither steers routing nor reaches the backend', async () => {
    const r = await route('www.example.com', [['X-Forwarded-Host', 'admin.example.com']])
    expect(r).toMatchObject({ status: 200, route: 'public' })
    expect(r.res.json<Echoed>().headers['x-forwarded-host']).toBe('www.example.com')
  })
})
