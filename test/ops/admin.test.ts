import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { METRIC_NAMES } from '../../src/metrics/metrics.js'
import { startIntrospectionServer, type IntrospectionServer } from '../helpers/introspection-server.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { OwnRedis } from '../helpers/redis.js'
import { LISTEN_ANY, startServer, type Running } from '../helpers/running.js'
import { bearer, send, startEchoUpstream, type Listening } from '../helpers/servers.js'

const ISS = 'https://metrics.test.example'
let upstream: Listening
let jwks: JwksServer
let as: IntrospectionServer
let redis: OwnRedis
let key: TestKey
let gw: Running

beforeAll(async () => {
  upstream = await startEchoUpstream()
  key = await makeKey('RS256')
  jwks = await startJwksServer([key.publicJwk])
  as = await startIntrospectionServer()
  redis = await OwnRedis.start()
  gw = await startServer(`${LISTEN_ANY}
cache: { redis: { url: "${redis.url}", key_prefix: "m:" } }
upstreams: { api: { url: "${upstream.url}" } }
issuers:
  - id: corp
    issuer: ${ISS}
    jwks_uri: ${jwks.jwksUri}
    audiences: [api]
    introspection: { endpoint: "${as.endpoint}", client_id: gateway, client_secret: "s3cret: +/%" }
routes:
  - { id: orders, match: { path: /orders/* }, upstream: api, auth: { issuers: [corp], scopes: { all_of: [read] } } }
  - { id: open, match: { path: /open }, upstream: api, auth: public }
`)
})
afterAll(async () => {
  await gw.drain()
  await redis.kill()
  await upstream.close()
  await jwks.close()
  await as.close()
})

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = (await send(gw.adminUrl, { path: '/metrics' })).body
  const want = Object.entries(labels)
  let total = 0
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue
    if (want.every(([k, v]) => line.includes(`${k}="${v}"`))) total += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return total
}

describe('/metrics', () => {
  it('counts requests, decisions, latencies, cache lookups, introspections and JWKS fetches with low-cardinality labels', async () => {
    const token = await sign(key, { iss: ISS, aud: 'api', scope: 'read' })
    for (let i = 0; i < 3; i++) expect((await send(gw.url, { path: `/orders/${i}?secret=${i}`, headers: [bearer(token)] })).status).toBe(200)
    expect((await send(gw.url, { path: '/orders/9' })).status).toBe(401)
    expect((await send(gw.url, { path: '/nope/../x' })).status).toBe(404)
    as.tokens.set('opaque-m', { active: true, iss: ISS, aud: 'api', scope: 'read' })
    for (let i = 0; i < 2; i++) expect((await send(gw.url, { path: '/orders/o', headers: [bearer('opaque-m')] })).status).toBe(200)

    expect(await metric('gateway_requests_total', { route: 'orders', method: 'GET', status_class: '2xx' })).toBe(5)
    expect(await metric('gateway_requests_total', { route: 'none', status_class: '4xx' })).toBe(1)
    expect(await metric('gateway_auth_decisions_total', { route: 'orders', result: 'allow', reason: 'ok' })).toBe(5)
    expect(await metric('gateway_auth_decisions_total', { route: 'orders', result: 'deny', reason: 'token_missing' })).toBe(1)
    expect(await metric('gateway_auth_decisions_total', { route: 'none', result: 'deny', reason: 'route_not_found' })).toBe(1)
    expect(await metric('gateway_auth_duration_seconds_count', { method: 'jwt', cache: 'origin' })).toBe(1)
    expect(await metric('gateway_auth_duration_seconds_count', { method: 'jwt', cache: 'memory' })).toBe(2)
    expect(await metric('gateway_auth_duration_seconds_count', { method: 'introspection', cache: 'origin' })).toBe(1)
    expect(await metric('gateway_auth_duration_seconds_count', { method: 'introspection', cache: 'memory' })).toBe(1)
    expect(await metric('gateway_upstream_duration_seconds_count', { route: 'orders', upstream: 'api' })).toBe(5)
    expect(await metric('gateway_introspection_requests_total', { issuer: 'corp', outcome: 'active' })).toBe(1)
    expect(await metric('gateway_token_cache_lookups_total', { tier: 'memory', result: 'hit' })).toBe(1)
    expect(await metric('gateway_token_cache_lookups_total', { tier: 'shared', result: 'miss' })).toBe(1)
    expect(await metric('gateway_jwks_fetches_total', { issuer: 'corp', outcome: 'success' })).toBeGreaterThanOrEqual(1)
    expect(await metric('gateway_redis_up')).toBe(1)
    expect(await metric('process_cpu_seconds_total')).toBeGreaterThan(0)

    const text = (await send(gw.adminUrl, { path: '/metrics' })).body
    expect(text).not.toContain('secret=')
    expect(text).not.toContain('/orders/')
    expect(text).not.toContain(token)
  })

  it('lists every metric in the README', () => {
    const readme = readFileSync('README.md', 'utf8')
    for (const name of METRIC_NAMES) expect(readme, name).toContain(`\`${name}\``)
  })
})

describe('/healthz and /readyz', () => {
  it('is alive and ready', async () => {
    expect((await send(gw.adminUrl, { path: '/healthz' })).json()).toEqual({ status: 'ok' })
    const ready = await send(gw.adminUrl, { path: '/readyz' })
    expect(ready.status).toBe(200)
    expect(ready.json()).toMatchObject({ status: 'ready', checks: { issuers: { corp: 'ok' }, redis: 'up' } })
  })

  it('reports degraded (still 200) while Redis is down, and ready again after', async () => {
    await redis.kill()
    for (let i = 0; i < 100 && gw.gateway.sharedStore!.up; i++) await new Promise((r) => setTimeout(r, 20))
    const degraded = await send(gw.adminUrl, { path: '/readyz' })
    expect(degraded.status).toBe(200)
    expect(degraded.json()).toMatchObject({ status: 'degraded', checks: { redis: 'down' } })
    expect(await metric('gateway_redis_up')).toBe(0)
    await redis.start()
    for (let i = 0; i < 250 && !gw.gateway.sharedStore!.up; i++) await new Promise((r) => setTimeout(r, 20))
    expect((await send(gw.adminUrl, { path: '/readyz' })).json()).toMatchObject({ status: 'ready' })
    expect(await metric('gateway_redis_up')).toBe(1)
  })

  it('is not ready (503) while an issuer has no keys', async () => {
    const dead = await startServer(`${LISTEN_ANY}
upstreams: { api: { url: "${upstream.url}" } }
issuers: [{ id: down, issuer: "https://down.example", jwks_uri: "http://127.0.0.1:1/jwks", audiences: [api] }]
routes: [{ id: r, match: { path: /r }, upstream: api, auth: { issuers: [down], scopes: none } }]
`)
    try {
      const res = await send(dead.adminUrl, { path: '/readyz' })
      expect(res.status).toBe(503)
      expect(res.json()).toMatchObject({ status: 'not_ready', checks: { issuers: { down: 'no_keys' } } })
    } finally {
      await dead.drain()
    }
  })
})
