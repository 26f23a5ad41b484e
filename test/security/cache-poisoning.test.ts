import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startIntrospectionServer, type IntrospectionServer } from '../helpers/introspection-server.js'
import { deletePrefix, SHARED_REDIS_URL, uniquePrefix } from '../helpers/redis.js'
import { bearer, send, startEchoUpstream, type Listening } from '../helpers/servers.js'

// Cache hygiene: what sits in the shared Redis can never turn into an allow
// unless the introspection endpoint said so for that very token.

const ISS = 'https://poison.test.example'
const prefix = uniquePrefix('poison')
let as: IntrospectionServer
let upstream: Listening
let g: TestGateway
let redis: Redis

beforeAll(async () => {
  as = await startIntrospectionServer()
  upstream = await startEchoUpstream()
  g = await startGateway(config())
  redis = new Redis(SHARED_REDIS_URL)
  for (let i = 0; i < 100 && !g.gateway.sharedStore?.up; i++) await new Promise((r) => setTimeout(r, 20))
})
afterAll(async () => {
  await g.close()
  await as.close()
  await upstream.close()
  await deletePrefix(SHARED_REDIS_URL, prefix)
  redis.disconnect()
})

/** The gateway under attack; `redisExtra` adds settings to cache.redis. */
const config = (redisExtra = '') => `
cache: { redis: { url: "${SHARED_REDIS_URL}", key_prefix: "${prefix}"${redisExtra} } }
upstreams: { api: { url: "${upstream.url}" } }
issuers:
  - id: a
    issuer: ${ISS}
    audiences: [api]
    introspection: { endpoint: "${as.endpoint}", client_id: gateway, client_secret: "s3cret: +/%" }
routes:
  - { id: r, match: { path: /r }, upstream: api, auth: { issuers: [a], scopes: { all_of: [read] } } }
`

const client = () => g.gateway.current.issuers.get('a')!.introspection!
const redisKey = (token: string) => prefix + client().cacheKey(token)
const call = (token: string) => send(g.url, { path: '/r', headers: [bearer(token)] })
let n = 0
const newToken = () => `tok-${process.pid}-${++n}-${Math.random().toString(36).slice(2)}`
const activeFor = (token: string) =>
  as.tokens.set(token, { active: true, iss: ISS, aud: 'api', scope: 'read', exp: Math.floor(Date.now() / 1000) + 600 })
const forged = (binding: string) =>
  `${Date.now() + 60_000}|v1:` + JSON.stringify({ active: true, iss: ISS, aud: ['api'], scope: 'read', sub: 'forged', binding })

describe('values planted in Redis', () => {
  it('a well-formed "active" value without the right binding is a miss, and the endpoint decides', async () => {
    const token = newToken() // inactive at the endpoint
    await redis.set(redisKey(token), forged('not-the-binding'), 'PX', 60_000)
    const res = await call(token)
    expect(res.status).toBe(401)
    expect(as.calls.get(token)).toBe(1)
  })

  it('a value copied from another token\'s key is a miss', async () => {
    const good = newToken()
    activeFor(good)
    expect((await call(good)).status).toBe(200)
    const copied = await redis.get(redisKey(good))
    expect(copied).toBeTruthy()
    const victim = newToken()
    await redis.set(redisKey(victim), copied!, 'PX', 60_000)
    expect((await call(victim)).status).toBe(401)
    expect(as.calls.get(victim)).toBe(1)
  })

  const corrupt = ['garbage', '123|not json', `${Date.now() + 60_000}|v1:{"active":true}`, `${Date.now() + 60_000}|v2:{}`, `${Date.now() - 1}|v1:{"active":true,"binding":"x"}`, `x|v1:{}`, `${Date.now() + 60_000}|v1:{"active":"yes","binding":"x"}`, `${Date.now() + 60_000}|v1:{"active":true,"binding":"x","admin":true}`]
  for (const value of corrupt) {
    it(`corrupt value ${JSON.stringify(value.slice(0, 40))} is a miss`, async () => {
      const token = newToken()
      activeFor(token)
      await redis.set(redisKey(token), value, 'PX', 60_000)
      expect((await call(token)).status).toBe(200)
      expect(as.calls.get(token)).toBe(1)
    })
  }
})

describe('with an integrity key', () => {
  it('a value with the binding an attacker can compute without the key is a miss', async () => {
    const keyed = await startGateway(config(', integrity_key: "0123456789abcdef0123456789abcdef-secret"'))
    try {
      for (let i = 0; i < 100 && !keyed.gateway.sharedStore?.up; i++) await new Promise((r) => setTimeout(r, 20))
      const token = newToken() // inactive at the endpoint
      const unkeyed = client() // the gateway without a key computes the binding as an attacker would
      await redis.set(redisKey(token), forged(unkeyed.binding(token)), 'PX', 60_000)
      // Without the key the planted value is accepted: that is what the key is for.
      expect((await call(token)).status).toBe(200)
      const res = await send(keyed.url, { path: '/r', headers: [bearer(token)] })
      expect(res.status).toBe(401)
    } finally {
      await keyed.close()
    }
  })
})

describe('what is stored', () => {
  it('keys are hashes bound to the issuer and endpoint; neither keys nor values contain the token', async () => {
    const token = newToken()
    activeFor(token)
    await call(token)
    const key = redisKey(token)
    expect(key).not.toContain(token)
    expect(key).toMatch(new RegExp(`^${prefix}introspection:[A-Za-z0-9_-]{43}$`))
    const value = (await redis.get(key))!
    expect(value).not.toContain(token)
    const ttl = await redis.pttl(key)
    expect(ttl).toBeGreaterThan(0)
    expect(ttl).toBeLessThanOrEqual(5 * 60_000)
  })

  it('an active result lives no longer than the token', async () => {
    const token = newToken()
    as.tokens.set(token, { active: true, iss: ISS, aud: 'api', scope: 'read', exp: Math.floor(Date.now() / 1000) + 3 })
    await call(token)
    expect(await redis.pttl(redisKey(token))).toBeLessThanOrEqual(3000)
  })

  it('an inactive result lives negative_ttl (default 30s)', async () => {
    const token = newToken()
    await call(token)
    const ttl = await redis.pttl(redisKey(token))
    expect(ttl).toBeGreaterThan(25_000)
    expect(ttl).toBeLessThanOrEqual(30_000)
  })
})
