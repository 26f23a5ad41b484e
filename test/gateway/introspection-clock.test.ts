import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startIntrospectionServer, type IntrospectionServer } from '../helpers/introspection-server.js'
import { bearer, send, startEchoUpstream, type Listening } from '../helpers/servers.js'

// Cache lifetimes under a controlled clock (the in-process tier, no Redis):
// max_ttl, negative_ttl and the token's exp, to the second.

const ISS = 'https://clock.test.example'
let as: IntrospectionServer
let upstream: Listening
let g: TestGateway
let clock = Date.parse('2026-11-25T12:00:00Z')
const s = (seconds: number) => seconds * 1000
const nowSeconds = () => Math.floor(clock / 1000)

beforeAll(async () => {
  as = await startIntrospectionServer()
  upstream = await startEchoUpstream()
  g = await startGateway(
    `
upstreams: { api: { url: "${upstream.url}" } }
issuers:
  - id: a
    issuer: ${ISS}
    audiences: [api]
    clock_skew: 0s
    introspection: { endpoint: "${as.endpoint}", client_id: gateway, client_secret: "s3cret: +/%", max_ttl: 5m, negative_ttl: 30s }
routes:
  - { id: r, match: { path: /r }, upstream: api, auth: { issuers: [a], scopes: { all_of: [read] } } }
`,
    {},
    { now: () => clock },
  )
})
afterAll(async () => {
  await g.close()
  await as.close()
  await upstream.close()
})

const call = (token: string) => send(g.url, { path: '/r', headers: [bearer(token)] })

describe('introspection cache lifetimes (controlled clock)', () => {
  it('an active result lives max_ttl, then the endpoint is asked again (revocation seen)', async () => {
    as.tokens.set('long', { active: true, iss: ISS, aud: 'api', scope: 'read', exp: nowSeconds() + 3600 })
    expect((await call('long')).status).toBe(200)
    clock += s(299)
    as.tokens.delete('long') // revoked
    expect((await call('long')).status).toBe(200) // within max_ttl: the cached result, as documented
    expect(as.calls.get('long')).toBe(1)
    clock += s(2)
    expect((await call('long')).status).toBe(401)
    expect(as.calls.get('long')).toBe(2)
  })

  it('an inactive result lives negative_ttl', async () => {
    expect((await call('never-active')).status).toBe(401)
    clock += s(29)
    expect((await call('never-active')).status).toBe(401)
    expect(as.calls.get('never-active')).toBe(1)
    as.tokens.set('never-active', { active: true, iss: ISS, aud: 'api', scope: 'read', exp: nowSeconds() + 3600 })
    clock += s(2)
    expect((await call('never-active')).status).toBe(200)
    expect(as.calls.get('never-active')).toBe(2)
  })

  it('no result outlives the token: at exp the cache lets go and the token is expired', async () => {
    as.tokens.set('short', { active: true, iss: ISS, aud: 'api', scope: 'read', exp: nowSeconds() + 60 })
    expect((await call('short')).status).toBe(200)
    clock += s(59)
    expect((await call('short')).status).toBe(200)
    expect(as.calls.get('short')).toBe(1)
    clock += s(2)
    const res = await call('short')
    expect(res.status).toBe(401)
    expect((await g.requestLog(res.headers['x-request-id'])).reason).toBe('token_expired')
    expect(as.calls.get('short')).toBe(2)
  })
})
