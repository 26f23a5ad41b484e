import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startIntrospectionServer, type IntrospectionServer } from '../helpers/introspection-server.js'
import { deletePrefix, SHARED_REDIS_URL, uniquePrefix } from '../helpers/redis.js'
import { bearer, send, startEchoUpstream, type Listening } from '../helpers/servers.js'
import { seal } from '../../src/cache/tiered-cache.js'

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
/** The key a record is stored under in Redis (the shared tier's "introspection:" before the cache key), without the deployment prefix. */
const sharedKey = (token: string) => 'introspection:' + client().cacheKey(token)
const redisKey = (token: string) => prefix + sharedKey(token)
const call = (token: string) => send(g.url, { path: '/r', headers: [bearer(token)] })
let n = 0
const newToken = () => `tok-${process.pid}-${++n}-${Math.random().toString(36).slice(2)}`
const activeFor = (token: string) =>
  as.tokens.set(token, { active: true, iss: ISS, aud: 'api', scope: 'read', exp: Math.floor(Date.now() / 1000) + 600 })
/** A sealed shared value as the gateway writes it (`secret` chosen by the test: what an attacker could compute, or not). */
const sealed = (key: string, record: object, secret: Buffer, expiresAt = Date.now() + 60_000) => {
  const text = 'v3:' + JSON.stringify(record)
  return `s1|${seal(secret, key, expiresAt, text)}|${expiresAt}|${text}`
}
const FORGED = { active: true, iss: ISS, aud: ['api'], scope: 'read admin', sub: 'root', client_id: 'root-client' }
const integrityFailures = () => g.gateway.metrics.cacheIntegrityFailures.value(['shared'])

describe('values altered in Redis', () => {
  it('a record rewritten in place (sub root, scope admin) keeping its seal is a miss; the endpoint decides', async () => {
    const token = newToken()
    as.tokens.set(token, { active: true, iss: ISS, aud: 'api', scope: 'read', sub: 'alice', client_id: 'alice-app', exp: Math.floor(Date.now() / 1000) + 600 })
    expect((await call(token)).status).toBe(200)
    const stored = (await redis.get(redisKey(token)))!
    const rewritten = stored.replace('"sub":"alice"', '"sub":"root"').replace('"scope":"read"', '"scope":"read admin"')
    expect(rewritten).not.toBe(stored)
    await redis.set(redisKey(token), rewritten, 'PX', 60_000)
    g.gateway.introspectionCache.forget(client().cacheKey(token)) // another replica: nothing in its memory
    const before = integrityFailures()
    const res = await call(token)
    expect(res.status).toBe(200)
    expect(res.json<{ headers: Record<string, string> }>().headers['x-subject']).toBe('alice')
    expect(as.calls.get(token)).toBe(2)
    expect(integrityFailures()).toBe(before + 1)
  })

  it('an inactive record turned active keeping its seal is a miss', async () => {
    const token = newToken() // inactive at the endpoint
    expect((await call(token)).status).toBe(401)
    const stored = (await redis.get(redisKey(token)))!
    await redis.set(redisKey(token), stored.replace('"active":false', '"active":true,"iss":"' + ISS + '","aud":["api"],"scope":"read"'), 'PX', 60_000)
    g.gateway.introspectionCache.forget(client().cacheKey(token))
    expect((await call(token)).status).toBe(401)
    expect(as.calls.get(token)).toBe(2)
  })

  it('a record whose expiry was pushed back keeping its seal is a miss', async () => {
    const token = newToken()
    activeFor(token)
    expect((await call(token)).status).toBe(200)
    const stored = (await redis.get(redisKey(token)))!
    const [format, mac, expires, ...rest] = stored.split('|')
    await redis.set(redisKey(token), [format, mac, String(Number(expires) + 3_600_000), ...rest].join('|'), 'PX', 60_000)
    g.gateway.introspectionCache.forget(client().cacheKey(token))
    expect((await call(token)).status).toBe(200)
    expect(as.calls.get(token)).toBe(2)
  })

  it("a value copied from another token's key is a miss", async () => {
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

  it('a forged value for a token the attacker does not hold cannot be sealed', async () => {
    const token = newToken() // inactive at the endpoint; the attacker sees only its key in Redis
    await redis.set(redisKey(token), sealed(sharedKey(token), FORGED, client().sealSecret('some-other-token')), 'PX', 60_000)
    expect((await call(token)).status).toBe(401)
    expect(as.calls.get(token)).toBe(1)
  })

  const corrupt = ['garbage', '123|not json', 's1|x|1|v2:{}', `v1:{"active":true}`, `${Date.now() + 60_000}|v1:{"active":true,"binding":"x"}`, `s1|${'A'.repeat(43)}|${Date.now() + 60_000}|v3:{"active":true}`, `s1|${'A'.repeat(43)}|-1|v3:{}`]
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
  it('even the holder of a token cannot forge its record: sealed without the key it is a miss', async () => {
    const keyed = await startGateway(config(', integrity_key: "0123456789abcdef0123456789abcdef-secret"'))
    try {
      for (let i = 0; i < 100 && !keyed.gateway.sharedStore?.up; i++) await new Promise((r) => setTimeout(r, 20))
      const token = newToken() // the attacker's own token: inactive (say, revoked) at the endpoint
      const key = sharedKey(token)
      // Without the key, whoever holds the token can seal a record for it: that is what the key is for.
      await redis.set(redisKey(token), sealed(key, FORGED, client().sealSecret(token)), 'PX', 60_000)
      expect((await call(token)).status).toBe(200)
      const res = await send(keyed.url, { path: '/r', headers: [bearer(token)] })
      expect(res.status).toBe(401)
      expect(keyed.gateway.metrics.cacheIntegrityFailures.value(['shared'])).toBe(1)
      expect(keyed.logs.some((l) => l.msg.includes('integrity check'))).toBe(true)
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
