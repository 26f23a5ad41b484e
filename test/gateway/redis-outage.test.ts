import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startIntrospectionServer, type IntrospectionServer } from '../helpers/introspection-server.js'
import { OwnRedis } from '../helpers/redis.js'
import { bearer, send, startEchoUpstream, type Listening } from '../helpers/servers.js'

// Redis down alone degrades to the in-process tier and direct introspection:
// no request fails, none is wrongly allowed; Redis coming back is used again.

const ISS = 'https://outage.test.example'
let redis: OwnRedis
let as: IntrospectionServer
let upstream: Listening
let g1: TestGateway
let g2: TestGateway

const config = (url: string) => `
cache: { redis: { url: "${url}", key_prefix: "outage:", timeout: 100ms } }
upstreams: { api: { url: "${upstream.url}" } }
issuers:
  - id: a
    issuer: ${ISS}
    audiences: [api]
    introspection: { endpoint: "${as.endpoint}", client_id: gateway, client_secret: "s3cret: +/%", negative_ttl: 200ms, max_ttl: 300ms }
routes:
  - { id: r, match: { path: /r }, upstream: api, auth: { issuers: [a], scopes: { all_of: [read] } } }
`

beforeAll(async () => {
  redis = await OwnRedis.start()
  as = await startIntrospectionServer()
  upstream = await startEchoUpstream()
  g1 = await startGateway(config(redis.url))
  g2 = await startGateway(config(redis.url))
})
afterAll(async () => {
  await g1?.close()
  await g2?.close()
  await redis?.kill()
  await as?.close()
  await upstream?.close()
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
async function until(what: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!what()) {
    if (Date.now() > end) throw new Error('timed out')
    await sleep(20)
  }
}

describe('Redis killed mid-traffic', () => {
  it('Redis down and the introspection endpoint down: 503, never an allow; closing does not wait for Redis', async () => {
    const lone = await OwnRedis.start()
    const g = await startGateway(config(lone.url))
    try {
      await until(() => Boolean(g.gateway.sharedStore?.up))
      await lone.kill()
      await until(() => !g.gateway.sharedStore!.up)
      const token = `both-down-${Math.random()}`
      as.tokens.set(token, { active: true, iss: ISS, aud: 'api', scope: 'read' })
      as.mode = 'error'
      const before = (upstream as Listening & { received: unknown[] }).received.length
      const res = await send(g.url, { path: '/r', headers: [bearer(token)] })
      expect(res.status).toBe(503)
      expect((upstream as Listening & { received: unknown[] }).received.length).toBe(before)
    } finally {
      as.mode = 'ok'
      const started = Date.now()
      await g.close()
      expect(Date.now() - started).toBeLessThan(2000)
      await lone.kill()
    }
  })

  it('no request fails or is wrongly allowed, and the tier is used again after a restart', async () => {
    await until(() => Boolean(g1.gateway.sharedStore?.up && g2.gateway.sharedStore?.up))
    const now = Math.floor(Date.now() / 1000)
    const good = Array.from({ length: 20 }, (_, i) => `good-${i}-${Math.random()}`)
    const bad = Array.from({ length: 20 }, (_, i) => `revoked-${i}-${Math.random()}`)
    for (const t of good) as.tokens.set(t, { active: true, iss: ISS, aud: 'api', scope: 'read', exp: now + 600 })

    const outcomes: Array<{ token: string; status: number }> = []
    let stop = false
    const traffic = (async () => {
      let i = 0
      while (!stop) {
        const token = i % 2 === 0 ? good[i % good.length]! : bad[i % bad.length]!
        const g = i % 3 === 0 ? g2 : g1
        const res = await send(g.url, { path: '/r', headers: [bearer(token)] })
        outcomes.push({ token, status: res.status })
        i++
      }
    })()

    await sleep(400)
    await redis.kill()
    await until(() => !g1.gateway.sharedStore!.up && !g2.gateway.sharedStore!.up)
    await sleep(800) // traffic with Redis down, past every cache TTL
    const duringOutage = outcomes.length

    await redis.start() // same port, empty
    await until(() => Boolean(g1.gateway.sharedStore?.up && g2.gateway.sharedStore?.up), 10_000)
    await sleep(300)
    stop = true
    await traffic

    expect(outcomes.length).toBeGreaterThan(100)
    expect(duringOutage).toBeGreaterThan(20)
    for (const o of outcomes) {
      if (o.token.startsWith('good')) expect(o.status, o.token).toBe(200)
      else expect(o.status, o.token).toBe(401)
    }

    // The shared tier serves again: a result stored by one instance is used by the other.
    const fresh = `fresh-${Math.random()}`
    as.tokens.set(fresh, { active: true, iss: ISS, aud: 'api', scope: 'read', exp: now + 600 })
    expect((await send(g1.url, { path: '/r', headers: [bearer(fresh)] })).status).toBe(200)
    expect((await send(g2.url, { path: '/r', headers: [bearer(fresh)] })).status).toBe(200)
    expect(as.calls.get(fresh)).toBe(1)
  })
})
