import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readiness } from '../../src/admin/readiness.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startIntrospectionServer, type IntrospectionServer } from '../helpers/introspection-server.js'
import { OwnRedis } from '../helpers/redis.js'
import { bearer, send, startEchoUpstream, type Listening } from '../helpers/servers.js'

// A hung Redis (SIGSTOP: the connection stays open, nothing is answered) is
// seen like a lost one: after a few timeouts the circuit opens, Redis counts
// as down (readiness degraded, gateway_redis_up 0), requests stop waiting on
// it, and it is used again once it answers.

const ISS = 'https://hung.test.example'
let redis: OwnRedis
let as: IntrospectionServer
let upstream: Listening
let g: TestGateway

beforeAll(async () => {
  redis = await OwnRedis.start()
  as = await startIntrospectionServer()
  upstream = await startEchoUpstream()
  g = await startGateway(`
cache: { redis: { url: "${redis.url}", key_prefix: "hung:", timeout: 100ms } }
upstreams: { api: { url: "${upstream.url}" } }
issuers:
  - id: a
    issuer: ${ISS}
    audiences: [api]
    introspection: { endpoint: "${as.endpoint}", client_id: gateway, client_secret: "s3cret: +/%" }
routes:
  - { id: r, match: { path: /r }, upstream: api, auth: { issuers: [a], scopes: { all_of: [read] } } }
`)
  for (let i = 0; i < 100 && !g.gateway.sharedStore?.up; i++) await new Promise((r) => setTimeout(r, 20))
})
afterAll(async () => {
  redis?.resume()
  await g?.close()
  await redis?.kill()
  await as?.close()
  await upstream?.close()
})

let n = 0
async function call(): Promise<{ status: number; ms: number }> {
  const token = `hung-${++n}-${Math.random().toString(36).slice(2)}`
  as.tokens.set(token, { active: true, iss: ISS, aud: 'api', scope: 'read', exp: Math.floor(Date.now() / 1000) + 600 })
  const started = performance.now()
  const res = await send(g.url, { path: '/r', headers: [bearer(token)] })
  return { status: res.status, ms: performance.now() - started }
}
const redisUp = async () => (await g.gateway.metrics.redis!.get()).values[0]?.value

describe('Redis frozen with SIGSTOP', () => {
  it('opens the circuit: degraded, redis_up 0, requests served without waiting on it; closes once Redis answers', async () => {
    expect((await call()).status).toBe(200)
    expect(readiness(g.gateway).status).toBe('ready')
    expect(await redisUp()).toBe(1)

    redis.pause()
    const during: Array<{ status: number; ms: number }> = []
    for (let i = 0; i < 10; i++) during.push(await call())
    expect(during.map((r) => r.status)).toEqual(Array(10).fill(200))
    expect(readiness(g.gateway).status).toBe('degraded')
    expect(readiness(g.gateway).checks.redis).toBe('down')
    expect(await redisUp()).toBe(0)
    // Once open, Redis is skipped: the last requests do not wait out its timeout.
    for (const r of during.slice(-4)) expect(r.ms).toBeLessThan(100)
    expect(g.logs.some((l) => l.msg.startsWith('redis unavailable') && String(l.cause).includes('in a row'))).toBe(true)

    redis.resume()
    for (let i = 0; i < 100 && readiness(g.gateway).status !== 'ready'; i++) await new Promise((r) => setTimeout(r, 50))
    expect(readiness(g.gateway).status).toBe('ready')
    expect(await redisUp()).toBe(1)
    expect((await call()).status).toBe(200)
  })
})
