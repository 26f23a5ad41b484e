import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { compileConfigText } from '../../src/config/index.js'
import { ConfigError, type ConfigIssue } from '../../src/config/errors.js'
import { gcra, LocalBuckets } from '../../src/cache/rate-limit-store.js'
import { bucketKey, type RateLimitRule } from '../../src/pipeline/ratelimit/limiter.js'
import type { Principal } from '../../src/pipeline/authn/principal.js'

const BASE = `
upstreams: { e: { echo: true } }
issuers: [{ id: i, issuer: https://i.example, jwks_uri: https://i.example/j, audiences: [a] }]
`
const route = (limits: string, auth = '{ issuers: [i], scopes: none }') => `${BASE}routes:\n  - id: r\n    match: { path: /r }\n    upstream: e\n    auth: ${auth}\n    rate_limits: ${limits}\n`

async function issues(yaml: string): Promise<ConfigIssue[]> {
  try {
    await compileConfigText(yaml, 'limits.yaml')
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return [...(err as ConfigError).issues]
  }
  throw new Error('accepted')
}

describe('rate limits in the configuration', () => {
  it.each([
    ['a period under a second', '[{ id: a, requests: 1, per: 500ms, by: [ip] }]', /a period from 1s to 24h/, 'rate_limits[0].per'],
    ['a period over a day', '[{ id: a, requests: 1, per: 25h, by: [ip] }]', /a period from 1s to 24h/, 'rate_limits[0].per'],
    ['more than a million a second', '[{ id: a, requests: 1000000000, per: 1s, by: [ip] }]', /at most 1000000 requests per second/, 'rate_limits[0].requests'],
    ['a batch larger than the burst', '[{ id: a, requests: 100, per: 1m, burst: 5, batch: 10, by: [client_id] }]', /larger than the burst/, 'rate_limits[0].batch'],
    ['a malformed claim path', '[{ id: a, requests: 1, per: 1s, by: ["claim:a..b"] }]', /not a claim path/, 'rate_limits[0].by[0]'],
    ['duplicate ids', '[{ id: a, requests: 1, per: 1s, by: [ip] }, { id: a, requests: 2, per: 1s, by: [sub] }]', /duplicate limit id "a"/, 'rate_limits[1].id'],
  ])('refuses %s, located', async (_name, limits, message, at) => {
    const found = await issues(route(limits))
    expect(found.map((i) => i.message).join('\n')).toMatch(message)
    expect(found.some((i) => i.path.includes(at) && i.line > 0)).toBe(true)
  })

  it('refuses a limit by identity on a public route (nothing to count by)', async () => {
    const found = await issues(route('[{ id: a, requests: 1, per: 1s, by: [ip, client_id] }]', 'public'))
    expect(found.map((i) => i.message).join('\n')).toMatch(/a public route has no identity to count by: only ip/)
  })

  it('splits limits by address (before the token) from limits by identity (after authorization), and shares default buckets', async () => {
    const config = await compileConfigText(
      `${BASE}
rate_limits:
  replicas_hint: 4
  default: [{ id: d, requests: 8, per: 1m, by: [ip] }, { id: e, requests: 8, per: 1m, by: [client_id] }]
routes:
  - { id: r, match: { path: /r }, upstream: e, auth: { issuers: [i], scopes: none }, rate_limits: [{ id: a, requests: 6, per: 1m, by: [ip] }, { id: b, requests: 6, per: 1m, burst: 2, by: [ip, sub] }] }
  - { id: s, match: { path: /s }, upstream: e, auth: { issuers: [i], scopes: none } }
  - { id: p, match: { path: /p }, upstream: e, auth: public }
  - { id: n, match: { path: /n }, upstream: e, auth: { issuers: [i], scopes: none }, rate_limits: false }
`,
      'limits.yaml',
    )
    const get = (id: string) => config.router.routes.find((r) => r.id === id)!.rateLimits
    expect(get('r')!.byAddress.map((l) => l.id)).toEqual(['a'])
    expect(get('r')!.byIdentity.map((l) => l.id)).toEqual(['b'])
    expect(get('r')!.byIdentity[0]).toMatchObject({ requests: 6, burst: 2, emissionUs: 10_000_000, scope: 'route:r', processes: 4, policy: '"b";q=6;w=60' })
    expect(get('s')!.byAddress.map((l) => l.scope)).toEqual(['default'])
    expect(get('s')!.byIdentity.map((l) => l.id)).toEqual(['e'])
    expect(get('p')!.byAddress.map((l) => l.id)).toEqual(['d'])
    expect(get('p')!.byIdentity).toEqual([])
    expect(get('n')).toBeUndefined()
    // The same default limit on two routes is one rule: one bucket per key across them.
    expect(get('s')!.byAddress[0]).toBe(get('p')!.byAddress[0])
  })

  it('keeps the claims a limit counts by in cached principals', async () => {
    const config = await compileConfigText(route('[{ id: a, requests: 1, per: 1s, by: ["claim:org.tenant"] }]'), 'limits.yaml')
    const r = config.router.routes.find((x) => x.id === 'r')!
    expect(r.auth.kind === 'protected' && r.auth.tokens.keepClaims).toContain('org')
  })
})

describe('cache.redis', () => {
  const redis = (block: string) => `${BASE}cache: { redis: ${block} }\nroutes:\n  - { id: r, match: { path: /r }, upstream: e, auth: public }\n`
  it.each([
    ['none of url, sentinel or cluster', '{ key_prefix: "x:" }', /name the Redis: url \(one server\), sentinel or cluster/],
    ['two of them', '{ url: "redis://h", cluster: { nodes: ["h:1"] } }', /give one of url, sentinel or cluster, not url and cluster/],
    ['a password beside a url', '{ url: "redis://h", password: x }', /with url, put password in the URL/],
    ['a database on a cluster', '{ cluster: { nodes: ["h:1"] }, db: 3 }', /a cluster has database 0 only/],
    ['a port out of range', '{ sentinel: { master_name: m, nodes: ["h:70000"] } }', /port 70000 is out of range/],
    ['a bracketed name that is no IPv6 address', '{ cluster: { nodes: ["[zz]:1"] } }', /zz is not an IPv6 address/],
    ['a URL that does not parse', '{ url: "redis://[zz" }', /not a valid URL/],
  ])('refuses %s, located', async (_name, block, message) => {
    const found = await issues(redis(block))
    expect(found.map((i) => i.message).join('\n')).toMatch(message)
    for (const i of found) expect(i.path).toMatch(/^cache\.redis/)
  })

  it('compiles each topology', async () => {
    const s = await compileConfigText(redis('{ sentinel: { master_name: m, nodes: ["a:26379", "[::1]:26380"], password: sp }, password: p, db: 2, wait_replicas: 1 }'), 'r.yaml')
    expect(s.cache.redis).toMatchObject({
      topology: { kind: 'sentinel', masterName: 'm', sentinels: [{ host: 'a', port: 26379 }, { host: '::1', port: 26380 }], password: 'p', sentinelPassword: 'sp', db: 2 },
      waitReplicas: 1,
      keyPrefix: 'gateway:',
      timeoutMs: 100,
    })
    const c = await compileConfigText(redis('{ cluster: { nodes: ["n1:7000"] }, tls: true }'), 'r.yaml')
    expect(c.cache.redis!.topology).toEqual({ kind: 'cluster', nodes: [{ host: 'n1', port: 7000 }], username: undefined, password: undefined, tls: true })
  })
})

describe('GCRA', () => {
  it('never grants more than burst plus one per interval elapsed, and grants whenever that bound leaves room', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 3_000_000 }), fc.integer({ min: 1, max: 5 })), { minLength: 1, maxLength: 60 }),
        (burst, interval, steps) => {
          let now = 1_000_000_000
          const start = now
          let tat = 0
          let granted = 0
          for (const [dt, want] of steps) {
            now += dt
            const t = gcra(tat, now, interval, burst, want)
            expect(t.granted).toBeGreaterThanOrEqual(0)
            expect(t.granted).toBeLessThanOrEqual(want)
            if (t.granted > 0) tat = t.tat
            else expect(t.retryAfterUs).toBeGreaterThan(0)
            granted += t.granted
            expect(granted).toBeLessThanOrEqual(burst + Math.floor((now - start) / interval))
            expect(t.remaining).toBeLessThanOrEqual(burst)
          }
        },
      ),
    )
  })

  it('a full bucket grants burst at once, then one per interval; Retry-After says when', () => {
    const b = new LocalBuckets(100, () => now)
    let now = 5_000_000
    const take = () => b.take('k', 2_000_000, 5, 1)
    expect(Array.from({ length: 6 }, () => take().granted)).toEqual([1, 1, 1, 1, 1, 0])
    const refused = take()
    expect(refused.retryAfterUs).toBe(2_000_000)
    now += 1_999_999
    expect(take().granted).toBe(0)
    now += 1
    expect(take().granted).toBe(1)
  })

  it('bounds the buckets a process keeps', () => {
    let now = 0
    const b = new LocalBuckets(100, () => now)
    for (let i = 0; i < 1000; i++) b.take(`k${i}`, 1_000_000_000, 1, 1)
    now += 1
    expect(b.size).toBeLessThanOrEqual(100)
  })
})

describe('bucket keys', () => {
  const rule = (by: RateLimitRule['by']): RateLimitRule => ({ id: 'l', scope: 'route:r', requests: 1, perSeconds: 1, burst: 1, emissionUs: 1, by, onRedisError: 'local', batch: 1, processes: 1, policy: '' })
  const who = (claims: Record<string, unknown>, issuerId = 'i'): { ip: string; principal: Principal } => ({
    ip: '10.0.0.1',
    principal: { issuerId, issuer: 'https://i', subject: claims.sub as string, clientId: claims.client_id as string, scopes: new Set(), expiresAt: undefined, claims, confirmation: undefined },
  })

  it('no choice of values makes two different identities meet', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.string(), fc.string(), (a, b, c, d) => {
        fc.pre(a !== c || b !== d)
        const r = rule([{ kind: 'client_id' }, { kind: 'sub' }])
        expect(bucketKey(r, who({ client_id: a, sub: b }))).not.toBe(bucketKey(r, who({ client_id: c, sub: d })))
      }),
    )
  })

  it('the same client id from two issuers is two clients; a claim of 7 is not the claim "7"; keys hold no client data', () => {
    const r = rule([{ kind: 'client_id' }])
    expect(bucketKey(r, who({ client_id: 'x' }, 'i'))).not.toBe(bucketKey(r, who({ client_id: 'x' }, 'j')))
    const t = rule([{ kind: 'claim', path: ['t'], name: 't' }])
    expect(bucketKey(t, who({ t: 7 }))).not.toBe(bucketKey(t, who({ t: '7' })))
    expect(bucketKey(t, who({}))).not.toBe(bucketKey(t, who({ t: '' })))
    expect(bucketKey(r, who({ client_id: 'secret-client' }))).not.toContain('secret')
    expect(bucketKey(r, who({ client_id: 'x' }))).toMatch(/^rl:\{[A-Za-z0-9_-]{27}\}$/)
  })
})
