import { afterEach, describe, expect, it } from 'vitest'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { bearer, send, startEchoUpstream } from '../helpers/servers.js'

const ISS = 'https://jwks.test.example'
const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!()
})

async function setup(keys: TestKey[], jwksSettings: string): Promise<{ jwks: JwksServer; gw: TestGateway }> {
  const jwks = await startJwksServer(keys.map((k) => k.publicJwk))
  const upstream = await startEchoUpstream()
  const gw = await startGateway(`
upstreams: { api: { url: "${upstream.url}" } }
issuers:
  - id: idp
    issuer: ${ISS}
    jwks_uri: ${jwks.jwksUri}
    audiences: [api]
    jwks: ${jwksSettings}
routes:
  - id: api
    match: { path: /api/* }
    upstream: api
    auth: { issuers: [idp], scopes: none }
`)
  cleanup.push(() => jwks.close(), () => upstream.close(), () => gw.close())
  return { jwks, gw }
}

// A distinct jti each time: identical tokens would be served by the verified-token cache.
const token = (key: TestKey) => sign(key, { iss: ISS, aud: 'api', sub: 's', jti: Math.random().toString(36) })
const call = (gw: TestGateway, t: string) => send(gw.url, { path: '/api/x', headers: [bearer(t)] })
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function reason(gw: TestGateway, res: { headers: Record<string, unknown> }) {
  return (await gw.requestLog(res.headers['x-request-id'] as string)).reason
}

describe('remote JWKS', () => {
  it('refuses an unknown kid, then accepts it once the issuer publishes it (rotation without restart)', async () => {
    const old = await makeKey('ES256')
    const next = await makeKey('ES256')
    const { jwks, gw } = await setup([old], '{ cooldown: 300ms }')
    expect((await call(gw, await token(old))).status).toBe(200)

    const before = await call(gw, await token(next))
    expect(before.status).toBe(401)
    expect(await reason(gw, before)).toBe('key_unknown')

    jwks.keys = [old.publicJwk, next.publicJwk]
    await sleep(350)
    expect((await call(gw, await token(next))).status).toBe(200)
    expect((await call(gw, await token(old))).status).toBe(200)
  })

  it('a flood of random kids causes at most one refetch per cooldown', async () => {
    const key = await makeKey('RS256')
    const { jwks, gw } = await setup([key], '{ cooldown: 2s }')
    expect((await call(gw, await token(key))).status).toBe(200)
    const hitsBefore = jwks.hits
    const forged = await Promise.all(Array.from({ length: 50 }, async (_, i) => sign(await makeKey('ES256', `random-${i}`), { iss: ISS, aud: 'api' })))
    const results = await Promise.all(forged.map((t) => call(gw, t)))
    expect(results.every((r) => r.status === 401)).toBe(true)
    expect(jwks.hits - hitsBefore).toBeLessThanOrEqual(1)
    // A second wave inside the cooldown fetches nothing.
    await Promise.all(forged.slice(0, 20).map((t) => call(gw, t)))
    expect(jwks.hits - hitsBefore).toBeLessThanOrEqual(1)
  })

  it('keeps verifying with cached keys while the JWKS endpoint is down', async () => {
    const key = await makeKey('EdDSA')
    const { jwks, gw } = await setup([key], '{ cooldown: 100ms, max_age: 100ms }')
    expect((await call(gw, await token(key))).status).toBe(200)
    jwks.down = true
    const hits = jwks.hits
    for (let i = 0; i < 3; i++) {
      await sleep(120) // past max_age: a background refresh is attempted and fails
      expect((await call(gw, await token(key))).status).toBe(200)
    }
    expect(jwks.hits).toBeGreaterThan(hits)
  })

  for (const [what, keys] of [
    ['an empty key set', () => []],
    ['a set of nothing but unusable keys', (k: TestKey) => [{ ...k.publicJwk, kid: 'hmac', kty: 'oct', k: 'c2VjcmV0' }, { ...k.publicJwk, kid: 'off-curve', x: 'AAAA' }]],
  ] as const) {
    it(`${what} from a flapping endpoint never replaces working keys; unknown kids meanwhile are 503`, async () => {
      const key = await makeKey('ES256')
      const { jwks, gw } = await setup([key], '{ cooldown: 100ms, max_age: 100ms }')
      expect((await call(gw, await token(key))).status).toBe(200)
      jwks.keys = keys(key) as never
      for (let i = 0; i < 5; i++) {
        await sleep(120) // past max_age and cooldown: refreshes are attempted and answered with the odd set
        expect((await call(gw, await token(key))).status).toBe(200)
      }
      const rotated = await call(gw, await token(await makeKey('ES256')))
      expect(rotated.status).toBe(503)
      expect(gw.gateway.metrics.jwksFetches.value(['idp', 'failure'])).toBeGreaterThan(0)
      expect(gw.logs.some((l) => l.msg.startsWith('JWKS fetch failed') && String(l.cause).includes('no usable key'))).toBe(true)
    })
  }

  it('answers 503 for an unknown kid it cannot look up while the endpoint is down', async () => {
    const key = await makeKey('RS256')
    const { jwks, gw } = await setup([key], '{ cooldown: 100ms }')
    expect((await call(gw, await token(key))).status).toBe(200)
    jwks.down = true
    await sleep(120)
    const res = await call(gw, await token(await makeKey('RS256')))
    expect(res.status).toBe(503)
    expect(res.json()).toMatchObject({ error: 'temporarily_unavailable' })
    expect(await reason(gw, res)).toBe('dependency_unavailable')
  })

  it('fails closed with 503 when no key was ever fetched, and recovers by itself', async () => {
    const key = await makeKey('ES256')
    const jwks = await startJwksServer([key.publicJwk])
    jwks.down = true
    const upstream = await startEchoUpstream()
    const gw = await startGateway(`
upstreams: { api: { url: "${upstream.url}" } }
issuers:
  - { id: idp, issuer: "${ISS}", jwks_uri: "${jwks.jwksUri}", audiences: [api], jwks: { timeout: 500ms } }
routes:
  - { id: api, match: { path: /api/* }, upstream: api, auth: { issuers: [idp], scopes: none } }
`)
    cleanup.push(() => jwks.close(), () => upstream.close(), () => gw.close())
    const res = await call(gw, await token(key))
    expect(res.status).toBe(503)
    expect(await reason(gw, res)).toBe('dependency_unavailable')
    expect(upstream.received).toHaveLength(0)

    // Failed fetches are retried at most once a second while there are no keys.
    const hits = jwks.hits
    await Promise.all(Array.from({ length: 20 }, async () => expect((await call(gw, await token(key))).status).toBe(503)))
    expect(jwks.hits - hits).toBeLessThanOrEqual(1)

    jwks.down = false
    await sleep(1100)
    expect((await call(gw, await token(key))).status).toBe(200)
  })

  it('drops keys the issuer stopped publishing once the set is refreshed', async () => {
    const old = await makeKey('RS256')
    const next = await makeKey('RS256')
    const { jwks, gw } = await setup([old, next], '{ cooldown: 50ms, max_age: 100ms }')
    expect((await call(gw, await token(old))).status).toBe(200)
    jwks.keys = [next.publicJwk]
    await sleep(150)
    await call(gw, await token(next)) // triggers the background refresh
    await sleep(50)
    const res = await call(gw, await token(old))
    expect(res.status).toBe(401)
    expect(await reason(gw, res)).toBe('key_unknown')
  })
})
