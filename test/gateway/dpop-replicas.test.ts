import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisUp, startGateway, type TestGateway } from '../helpers/gateway.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { deletePrefix, OwnRedis, SHARED_REDIS_URL, uniquePrefix } from '../helpers/redis.js'
import { send } from '../helpers/servers.js'
import { dpopAuth, makeDpopKey, proof, type DpopKey } from '../helpers/dpop.js'

// A DPoP proof is accepted once across every replica (Redis SET NX): the same
// proof replayed at another replica — or at both at once — passes at most
// once. With Redis away, `deny` (the default) answers 503 and `local` falls
// back to each replica's memory, counted.

const ISS = 'https://dpop-replicas.test.example'
let key: TestKey
let jwks: JwksServer
let client: DpopKey
let token: string

beforeAll(async () => {
  key = await makeKey('ES256')
  jwks = await startJwksServer([key.publicJwk])
  client = makeDpopKey('ES256')
  token = await sign(key, { iss: ISS, aud: 'api', sub: 'alice', cnf: { jkt: client.jkt } }, { expiresIn: 600 })
})
afterAll(() => jwks.close())

const config = (redisUrl: string, prefix: string, fallback = 'deny') => `
cache: { redis: { url: "${redisUrl}", key_prefix: "${prefix}", timeout: 200ms } }
dpop: { replay: { on_redis_error: ${fallback} } }
upstreams: { api: { echo: true } }
issuers:
  - { id: idp, issuer: ${ISS}, jwks_uri: ${jwks.jwksUri}, audiences: [api] }
routes:
  - { id: api, match: { path: /api/* }, upstream: api, auth: { issuers: [idp], scopes: none } }
`

/** The same request (same Host) sent to any replica: the proof names one URI for all of them. */
const HOST = 'api.example.com'
const htu = `http://${HOST}/api/x`
const call = (g: TestGateway, p: string) => send(g.url, { path: '/api/x', headers: [['Host', HOST], dpopAuth(token), ['DPoP', p]] })

describe('replay across replicas (shared Redis)', () => {
  const prefix = uniquePrefix('dpop')
  let a: TestGateway
  let b: TestGateway
  beforeAll(async () => {
    a = await startGateway(config(SHARED_REDIS_URL, prefix))
    b = await startGateway(config(SHARED_REDIS_URL, prefix))
    await redisUp(a)
    await redisUp(b)
  })
  afterAll(async () => {
    await a.close()
    await b.close()
    await deletePrefix(SHARED_REDIS_URL, prefix)
  })

  it('a proof used at one replica is refused at the other', async () => {
    const p = proof(client, { htm: 'GET', htu, token })
    expect((await call(a, p)).status).toBe(200)
    const replayed = await call(b, p)
    expect(replayed.status).toBe(401)
    expect((await b.requestLog(replayed.headers['x-request-id'])).reason).toBe('dpop_proof_replayed')
  })

  it('the same proofs raced at both replicas at once pass exactly once each', async () => {
    const proofs = Array.from({ length: 40 }, () => proof(client, { htm: 'GET', htu, token }))
    const results = await Promise.all(proofs.flatMap((p) => [call(a, p), call(b, p), call(a, p)]))
    const ok = results.filter((r) => r.status === 200).length
    expect(ok).toBe(proofs.length)
    expect(results.filter((r) => r.status === 401).length).toBe(proofs.length * 2)
  })
})

describe('Redis away', () => {
  let redis: OwnRedis
  beforeAll(async () => {
    redis = await OwnRedis.start()
  })
  afterAll(() => redis.kill())

  it('deny (the default): 503 with Retry-After while Redis is down, accepted again once it is back', async () => {
    const g = await startGateway(config(redis.url, uniquePrefix('dpop-deny')))
    try {
      await redisUp(g)
      expect((await call(g, proof(client, { htm: 'GET', htu, token }))).status).toBe(200)
      await redis.kill()
      let res = await call(g, proof(client, { htm: 'GET', htu, token }))
      for (let i = 0; i < 20 && res.status === 200; i++) res = await call(g, proof(client, { htm: 'GET', htu, token }))
      expect(res.status).toBe(503)
      expect(res.headers['retry-after']).toBe('1')
      await redis.start()
      let back = 0
      for (let i = 0; i < 100 && back !== 200; i++) {
        back = (await call(g, proof(client, { htm: 'GET', htu, token }))).status
        if (back !== 200) await new Promise((r) => setTimeout(r, 100))
      }
      expect(back).toBe(200)
    } finally {
      await g.close()
    }
  })

  it('local: each replica remembers proofs itself (a replay at the same replica is still refused), counted', async () => {
    const g = await startGateway(config(redis.url, uniquePrefix('dpop-local'), 'local'))
    try {
      await redis.kill()
      const p = proof(client, { htm: 'GET', htu, token })
      expect((await call(g, p)).status).toBe(200)
      expect((await call(g, p)).status).toBe(401)
      expect(await g.gateway.metrics.registry.metrics()).toMatch(/gateway_dpop_replay_local_total [1-9]/)
    } finally {
      await g.close()
      await redis.start()
    }
  })
})
