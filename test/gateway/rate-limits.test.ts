import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisUp, startGateway, type TestGateway } from '../helpers/gateway.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { bearer, send, startEchoUpstream, type Echoed, type Listening, type RawResponse } from '../helpers/servers.js'
import { deletePrefix, OwnRedis, SHARED_REDIS_URL, uniquePrefix } from '../helpers/redis.js'

// Rate limits through a running gateway: real upstream, real JWKS, real Redis.

const ISS = 'https://rl.test.example'
let key: TestKey
let jwks: JwksServer
let upstream: Listening & { received: Echoed[] }
const gateways: TestGateway[] = []
const prefixes: string[] = []

beforeAll(async () => {
  key = await makeKey('ES256')
  jwks = await startJwksServer([key.publicJwk])
  upstream = await startEchoUpstream()
})
afterAll(async () => {
  for (const g of gateways) await g.close()
  for (const p of prefixes) await deletePrefix(SHARED_REDIS_URL, p)
  await upstream?.close()
  await jwks?.close()
})

const token = (claims: Record<string, unknown> = {}) => sign(key, { iss: ISS, aud: 'api', sub: 'user-1', client_id: 'client-1', scope: 'read', ...claims })

function config(routes: string, extra = ''): string {
  return `
upstreams: { api: { url: "${upstream.url}" } }
issuers:
  - { id: corp, issuer: ${ISS}, jwks_uri: "${jwks.jwksUri}", audiences: [api], algorithms: [ES256] }
${extra}
routes:
${routes}`
}

async function gateway(yaml: string): Promise<TestGateway> {
  const g = await startGateway(yaml)
  gateways.push(g)
  // With Redis configured, wait for it: a gateway serves before it connects (limits then fall back).
  if (g.gateway.sharedStore) await redisUp(g)
  return g
}

const forwarded = (path: string) => upstream.received.filter((r) => r.url === path).length

/** RateLimit: "id";r=N;t=N members, parsed. */
function current(res: RawResponse): Record<string, { r: number; t: number }> {
  const out: Record<string, { r: number; t: number }> = {}
  for (const m of String(res.headers.ratelimit ?? '').split(/,\s*/)) {
    const x = /^"([^"]+)";r=(\d+);t=(\d+)$/.exec(m)
    if (x) out[x[1]!] = { r: Number(x[2]), t: Number(x[3]) }
  }
  return out
}

describe('a limit by client (in-process counters)', () => {
  let g: TestGateway
  beforeAll(async () => {
    g = await gateway(
      config(`
  - id: orders
    match: { path: /orders/* }
    upstream: api
    auth: { issuers: [corp], scopes: { all_of: [read] } }
    rate_limits:
      - { id: per-client, requests: 5, per: 10s, by: [client_id] }
  - id: quiet
    match: { path: /quiet/* }
    upstream: api
    auth: { issuers: [corp], scopes: { all_of: [read] } }
    rate_limit_headers: false
    rate_limits:
      - { id: per-client, requests: 2, per: 1h, by: [client_id] }
`),
    )
  })

  it('allows 5 with RateLimit-Policy and RateLimit, refuses the 6th with 429 and Retry-After, and never forwards it', async () => {
    const t = await token()
    const seen: RawResponse[] = []
    for (let i = 0; i < 6; i++) seen.push(await send(g.url, { path: '/orders/a', headers: [bearer(t)] }))
    expect(seen.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 429])
    for (const r of seen) expect(r.headers['ratelimit-policy']).toBe('"per-client";q=5;w=10')
    expect(seen.map((r) => current(r)['per-client']?.r)).toEqual([4, 3, 2, 1, 0, 0])
    expect(current(seen[0]!)['per-client']?.t).toBe(2)
    const refused = seen[5]!
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1)
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(2)
    expect(refused.json()).toMatchObject({ error: 'too_many_requests' })
    expect(forwarded('/orders/a')).toBe(5)
    const line = await g.requestLog(refused.headers['x-request-id'])
    expect(line).toMatchObject({ status: 429, reason: 'rate_limited', decision: 'deny', limit: 'per-client' })
  })

  it("one client's limit does not touch another's; the same client id from a token of another subject shares it", async () => {
    const other = await send(g.url, { path: '/orders/b', headers: [bearer(await token({ client_id: 'client-2' }))] })
    expect(other.status).toBe(200)
    expect(current(other)['per-client']?.r).toBe(4)
    const sameClient = await send(g.url, { path: '/orders/b', headers: [bearer(await token({ sub: 'someone-else' }))] })
    expect(sameClient.status).toBe(429)
  })

  it('a refused token is not counted: limits by identity count authorized requests', async () => {
    const t = await token({ client_id: 'client-3', scope: 'other' })
    for (let i = 0; i < 8; i++) expect((await send(g.url, { path: '/orders/c', headers: [bearer(t)] })).status).toBe(403)
    expect((await send(g.url, { path: '/orders/c', headers: [bearer(await token({ client_id: 'client-3' }))] })).status).toBe(200)
  })

  it('headers can be turned off per route; the 429 still says Retry-After', async () => {
    const t = await token({ client_id: 'quiet-client' })
    const a = await send(g.url, { path: '/quiet/x', headers: [bearer(t)] })
    await send(g.url, { path: '/quiet/x', headers: [bearer(t)] })
    const c = await send(g.url, { path: '/quiet/x', headers: [bearer(t)] })
    expect([a.status, c.status]).toEqual([200, 429])
    expect(a.headers.ratelimit).toBeUndefined()
    expect(c.headers['ratelimit-policy']).toBeUndefined()
    expect(Number(c.headers['retry-after'])).toBeGreaterThan(1700)
  })

  it('counts decisions in metrics by route and limit, never by client', async () => {
    const text = await g.gateway.metrics.registry.metrics()
    expect(text).toMatch(/gateway_rate_limit_decisions_total\{route="orders",limit="per-client",decision="limited"\} [1-9]/)
    expect(text).not.toContain('client-1')
  })
})

describe('limits by address run before the token is verified', () => {
  it('bad tokens use up the address bucket; then even a valid token is 429 without verification; X-Forwarded-For from an untrusted peer changes nothing', async () => {
    const g = await gateway(
      config(`
  - id: r
    match: { path: /r }
    upstream: api
    auth: { issuers: [corp], scopes: { all_of: [read] } }
    rate_limits:
      - { id: per-address, requests: 3, per: 1h, by: [ip] }
`),
    )
    for (let i = 0; i < 3; i++) {
      const res = await send(g.url, { path: '/r', headers: [bearer('not.a.jwt'), ['X-Forwarded-For', `203.0.113.${i}`]] })
      expect(res.status).toBe(401)
    }
    const forged = await send(g.url, { path: '/r', headers: [bearer('not.a.jwt'), ['X-Forwarded-For', '198.51.100.7'], ['X-Real-IP', '198.51.100.8'], ['Forwarded', 'for=198.51.100.9']] })
    expect(forged.status).toBe(429)
    const valid = await send(g.url, { path: '/r', headers: [bearer(await token())] })
    expect(valid.status).toBe(429)
    expect(forwarded('/r')).toBe(0)
  })

  it('behind a trusted proxy the client address it vouches for is the key', async () => {
    const g = await gateway(
      config(
        `
  - id: r2
    match: { path: /r2 }
    upstream: api
    auth: public
    rate_limits:
      - { id: per-address, requests: 1, per: 1h, by: [ip] }
`,
        'server: { trust_proxy: [loopback] }',
      ),
    )
    const from = (ip: string) => send(g.url, { path: '/r2', headers: [['X-Forwarded-For', ip]] })
    expect((await from('203.0.113.1')).status).toBe(200)
    expect((await from('203.0.113.1')).status).toBe(429)
    expect((await from('203.0.113.2')).status).toBe(200)
  })
})

describe('keys and defaults', () => {
  it('a limit by claim: one bucket per value; tokens without the claim share one bucket', async () => {
    const g = await gateway(
      config(`
  - id: t
    match: { path: /t }
    upstream: api
    auth: { issuers: [corp], scopes: { all_of: [read] } }
    rate_limits:
      - { id: per-tenant, requests: 2, per: 1h, by: ["claim:org.tenant"] }
`),
    )
    const call = async (claims: Record<string, unknown>) => (await send(g.url, { path: '/t', headers: [bearer(await token(claims))] })).status
    expect(await call({ client_id: 'a', org: { tenant: 'acme' } })).toBe(200)
    expect(await call({ client_id: 'b', org: { tenant: 'acme' } })).toBe(200)
    expect(await call({ client_id: 'c', org: { tenant: 'acme' } })).toBe(429)
    expect(await call({ client_id: 'c', org: { tenant: 'globex' } })).toBe(200)
    // A tenant that is a number is not the string of that number.
    expect(await call({ org: { tenant: 7 } })).toBe(200)
    expect(await call({ org: { tenant: '7' } })).toBe(200)
    expect(await call({ org: {} })).toBe(200)
    expect(await call({ client_id: 'z' })).toBe(200)
    expect(await call({ client_id: 'y' })).toBe(429)
  })

  it('default limits cover every route without its own, one bucket across them; a public route keeps only those by address', async () => {
    const g = await gateway(
      config(
        `
  - { id: a, match: { path: /a }, upstream: api, auth: { issuers: [corp], scopes: { all_of: [read] } } }
  - { id: b, match: { path: /b }, upstream: api, auth: { issuers: [corp], scopes: { all_of: [read] } } }
  - { id: own, match: { path: /own }, upstream: api, auth: { issuers: [corp], scopes: { all_of: [read] } }, rate_limits: false }
  - { id: open, match: { path: /open }, upstream: api, auth: public }
`,
        `rate_limits:
  default:
    - { id: per-client, requests: 3, per: 1h, by: [client_id] }
    - { id: per-address, requests: 6, per: 1h, by: [ip] }`,
      ),
    )
    const t = await token({ client_id: 'default-client' })
    const statuses: number[] = []
    for (const path of ['/a', '/b', '/a', '/b']) statuses.push((await send(g.url, { path, headers: [bearer(t)] })).status)
    expect(statuses).toEqual([200, 200, 200, 429])
    const own = await send(g.url, { path: '/own', headers: [bearer(t)] })
    expect(own.status).toBe(200)
    expect(own.headers.ratelimit).toBeUndefined()
    const open = await send(g.url, { path: '/open' })
    expect(open.headers['ratelimit-policy']).toBe('"per-address";q=6;w=3600')
    // The address bucket is shared too: /a and /b took 4, /open 1, so one is left.
    expect((await send(g.url, { path: '/open' })).status).toBe(200)
    expect((await send(g.url, { path: '/open' })).status).toBe(429)
  })
})

describe('shared across replicas through Redis', () => {
  const prefix = uniquePrefix('rl')
  prefixes.push(prefix)
  const shared = (limit: string) =>
    config(
      `
  - id: orders
    match: { path: /orders/* }
    upstream: api
    auth: { issuers: [corp], scopes: { all_of: [read] } }
    rate_limits:
      - ${limit}
`,
      `cache: { redis: { url: "${SHARED_REDIS_URL}", key_prefix: "${prefix}" } }`,
    )

  it('exact: two replicas hammered at once allow exactly the limit between them', async () => {
    const a = await gateway(shared('{ id: per-client, requests: 20, per: 1h, by: [client_id] }'))
    const b = await gateway(shared('{ id: per-client, requests: 20, per: 1h, by: [client_id] }'))
    const t = await token({ client_id: 'shared-exact' })
    const results = await Promise.all(Array.from({ length: 60 }, (_, i) => send((i % 2 ? a : b).url, { path: '/orders/exact', headers: [bearer(t)] })))
    expect(results.filter((r) => r.status === 200)).toHaveLength(20)
    expect(results.filter((r) => r.status === 429)).toHaveLength(40)
    expect(forwarded('/orders/exact')).toBe(20)
    // Each replica got its part from Redis: the headers say what is left there, not in one process.
    const last = results.filter((r) => r.status === 200).map((r) => current(r)['per-client']!.r)
    expect(Math.min(...last)).toBe(0)
  })

  it('batched: fewer Redis calls than requests, and never more than the limit when the period is long', async () => {
    const limit = '{ id: batched, requests: 30, per: 1h, by: [client_id], batch: 5 }'
    const a = await gateway(shared(limit))
    const b = await gateway(shared(limit))
    const t = await token({ client_id: 'shared-batched' })
    const results: RawResponse[] = []
    for (let round = 0; round < 8; round++) {
      results.push(...(await Promise.all(Array.from({ length: 10 }, (_, i) => send((i % 2 ? a : b).url, { path: '/orders/batched', headers: [bearer(t)] })))))
    }
    const allowed = results.filter((r) => r.status === 200).length
    expect(allowed).toBeLessThanOrEqual(30)
    // Left unused at most: batch - 1 per replica.
    expect(allowed).toBeGreaterThanOrEqual(30 - 2 * 4)
    const calls = (g: TestGateway) => g.gateway.metrics.rateLimitStoreDuration.count([])
    expect(calls(a) + calls(b)).toBeLessThan(allowed / 2)
  })
})

describe('batches: the stated worst case', () => {
  const prefix = uniquePrefix('rl-batch')
  prefixes.push(prefix)
  it('two replicas with batch 5 on a limit of 20 per second: in any second at most burst + requests + 2 × (5 − 1)', async () => {
    const yaml = config(
      `
  - id: short
    match: { path: /short }
    upstream: api
    auth: { issuers: [corp], scopes: { all_of: [read] } }
    rate_limits: [{ id: short, requests: 20, per: 1s, by: [client_id], batch: 5 }]
`,
      `cache: { redis: { url: "${SHARED_REDIS_URL}", key_prefix: "${prefix}" } }`,
    )
    const a = await gateway(yaml)
    const b = await gateway(yaml)
    const t = await token({ client_id: 'batch-bound' })
    const allowedAt: number[] = []
    const started = Date.now()
    while (Date.now() - started < 2500) {
      const round = await Promise.all(Array.from({ length: 8 }, (_, i) => send((i % 2 ? a : b).url, { path: '/short', headers: [bearer(t)] })))
      const at = Date.now()
      for (const r of round) {
        expect([200, 429]).toContain(r.status)
        if (r.status === 200) allowedAt.push(at)
      }
    }
    const elapsed = Date.now() - started
    let busiest = 0
    for (const from of allowedAt) busiest = Math.max(busiest, allowedAt.filter((x) => x >= from && x < from + 1000).length)
    expect(busiest).toBeLessThanOrEqual(20 + 20 + 2 * 4)
    // Over the whole run: the burst, one per 50 ms since, and each replica's unspent batch.
    expect(allowedAt.length).toBeLessThanOrEqual(20 + Math.ceil(elapsed / 50) + 2 * 4)
    expect(allowedAt.length).toBeGreaterThan(20)
  })
})

describe('Redis away: each limit says what happens', () => {
  let redis: OwnRedis
  let g: TestGateway
  beforeAll(async () => {
    redis = await OwnRedis.start()
    const route = (id: string, mode: string) => `
  - id: ${id}
    match: { path: /${id} }
    upstream: api
    auth: { issuers: [corp], scopes: { all_of: [read] } }
    rate_limits:
      - { id: lim, requests: 4, per: 1h, by: [client_id], on_redis_error: ${mode} }`
    g = await gateway(config(route('open', 'allow') + route('closed', 'deny') + route('local', 'local'), `cache: { redis: { url: "${redis.url}", key_prefix: "out:", timeout: 100ms } }\nrate_limits: { replicas_hint: 2 }`))
  })
  afterAll(async () => {
    await redis?.kill()
  })

  it('allow: uncounted; deny: 503 with Retry-After; local: this process enforces its share (4 / replicas_hint 2); never a 500; and the shared bucket is used again once Redis answers', async () => {
    const t = await token({ client_id: 'outage' })
    const call = async (path: string) => send(g.url, { path, headers: [bearer(t)] })
    for (let i = 0; i < 50 && !g.gateway.sharedStore?.up; i++) await new Promise((r) => setTimeout(r, 50))
    expect((await call('/local')).status).toBe(200) // one taken from the shared bucket
    // Frozen (SIGSTOP): connections open, nothing answered; each call times out until the breaker opens.
    redis.pause()

    const open = await Promise.all(Array.from({ length: 6 }, () => call('/open')))
    expect(open.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200])
    const closed = await call('/closed')
    expect(closed.status).toBe(503)
    expect(closed.headers['retry-after']).toBe('1')
    expect(closed.json()).toMatchObject({ error: 'temporarily_unavailable' })
    const local: number[] = []
    for (let i = 0; i < 4; i++) local.push((await call('/local')).status)
    expect(local).toEqual([200, 200, 429, 429])

    const text = await g.gateway.metrics.registry.metrics()
    expect(text).toMatch(/gateway_rate_limit_redis_failures_total\{route="open",limit="lim",mode="allow"\} 6/)
    expect(text).toMatch(/gateway_rate_limit_decisions_total\{route="closed",limit="lim",decision="unavailable"\} 1/)
    expect(g.logs.filter((l) => l.msg.startsWith('rate limit: Redis did not answer')).length).toBe(3)

    redis.resume()
    for (let i = 0; i < 100 && !g.gateway.sharedStore?.up; i++) await new Promise((r) => setTimeout(r, 50))
    // Back on the shared bucket (1 of 4 used before the outage).
    const back: number[] = []
    for (let i = 0; i < 4; i++) back.push((await call('/local')).status)
    expect(back).toEqual([200, 200, 200, 429])
  })

  it('a script flushed from Redis (SCRIPT FLUSH, a restart) is loaded again: no decision lost', async () => {
    for (let i = 0; i < 100 && !g.gateway.sharedStore?.up; i++) await new Promise((r) => setTimeout(r, 50))
    const t = await token({ client_id: 'flushed' })
    expect((await send(g.url, { path: '/closed', headers: [bearer(t)] })).status).toBe(200)
    const { Redis } = await import('ioredis')
    const admin = new Redis(redis.url)
    await admin.script('FLUSH')
    admin.disconnect()
    const after: number[] = []
    for (let i = 0; i < 4; i++) after.push((await send(g.url, { path: '/closed', headers: [bearer(t)] })).status)
    expect(after).toEqual([200, 200, 200, 429])
  })
})
