import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startIntrospectionServer, type IntrospectionServer } from '../helpers/introspection-server.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { deletePrefix, SHARED_REDIS_URL, uniquePrefix } from '../helpers/redis.js'
import { bearer, send, startEchoUpstream, type Echoed, type Listening } from '../helpers/servers.js'

const ISS_A = 'https://a.test.example'
const ISS_B = 'https://b.test.example'
const prefix = uniquePrefix('introspection')

let upstream: Listening & { received: Echoed[] }
let asA: IntrospectionServer
let asB: IntrospectionServer
let jwks: JwksServer
let key: TestKey
const gateways: TestGateway[] = []

beforeAll(async () => {
  upstream = await startEchoUpstream()
  asA = await startIntrospectionServer()
  asB = await startIntrospectionServer({ id: 'gw-b', secret: 'b-secret' })
  key = await makeKey('ES256')
  jwks = await startJwksServer([key.publicJwk])
})
afterEach(async () => {
  asA.mode = 'ok'
  asB.mode = 'ok'
})
afterAll(async () => {
  for (const g of gateways) await g.close()
  await upstream.close()
  await asA.close()
  await asB.close()
  await jwks.close()
  await deletePrefix(SHARED_REDIS_URL, prefix)
})

function config(options: { redis?: boolean; maxTtl?: string; negativeTtl?: string; authMethod?: string } = {}): string {
  return `
${options.redis ? `cache: { redis: { url: "${SHARED_REDIS_URL}", key_prefix: "${prefix}" } }` : ''}
identity_headers: { claims: { tenant: X-Tenant, toString: X-Tostring, constructor: X-Ctor } }
upstreams: { api: { url: "${upstream.url}" } }
issuers:
  - id: a
    issuer: ${ISS_A}
    jwks_uri: ${jwks.jwksUri}
    audiences: [api]
    clock_skew: 1s
    introspection:
      endpoint: ${asA.endpoint}
      client_id: gateway
      client_secret: "s3cret: +/%"
      auth_method: ${options.authMethod ?? 'client_secret_basic'}
      timeout: 500ms
      max_ttl: ${options.maxTtl ?? '5m'}
      negative_ttl: ${options.negativeTtl ?? '30s'}
  - id: b
    issuer: ${ISS_B}
    audiences: [api]
    introspection: { endpoint: "${asB.endpoint}", client_id: gw-b, client_secret: b-secret, auth_method: client_secret_post }
routes:
  - { id: read, match: { path: /read/* }, upstream: api, auth: { issuers: [a], scopes: { all_of: [read] } } }
  - { id: write, match: { path: /write/* }, upstream: api, auth: { issuers: [a], scopes: { all_of: [write] } } }
  - { id: only-b, match: { path: /b/* }, upstream: api, auth: { issuers: [b], scopes: { all_of: [read] } } }
  - { id: revocable, match: { path: /revocable/* }, upstream: api, auth: { issuers: [a], scopes: none, validation: jwt_and_introspection } }
`
}

async function gateway(options: Parameters<typeof config>[0] = {}): Promise<TestGateway> {
  const g = await startGateway(config(options))
  gateways.push(g)
  return g
}

let n = 0
function opaque(claims: Record<string, unknown> | null, server: IntrospectionServer = asA): string {
  const token = `opaque-${Date.now()}-${++n}-${Math.random().toString(36).slice(2)}`
  const now = Math.floor(Date.now() / 1000)
  if (claims) server.tokens.set(token, { active: true, iss: server === asA ? ISS_A : ISS_B, aud: 'api', exp: now + 600, sub: 'user', client_id: 'c1', scope: 'read', ...claims })
  return token
}

const call = (g: TestGateway, token: string, path = '/read/x') => send(g.url, { path, headers: [bearer(token)] })
const reasonOf = async (g: TestGateway, res: { headers: Record<string, unknown> }) => (await g.requestLog(res.headers['x-request-id'] as string)).reason

describe('opaque tokens', () => {
  it('are introspected once, then served from the in-process cache, with identity headers', async () => {
    const g = await gateway()
    const token = opaque({ tenant: 'acme' })
    for (let i = 0; i < 5; i++) {
      const res = await call(g, token)
      expect(res.status).toBe(200)
      expect(res.json<Echoed>().headers).toMatchObject({ 'x-client-id': 'c1', 'x-subject': 'user', 'x-scopes': 'read', 'x-issuer': ISS_A, 'x-tenant': 'acme' })
    }
    expect(asA.calls.get(token)).toBe(1)
    expect(asA.lastAuth).toBe('basic')
  })

  it('a claim named like what every object inherits is absent unless the endpoint sends it', async () => {
    const g = await gateway()
    for (const [claims, expected] of [
      [{}, { 'x-tostring': undefined, 'x-ctor': undefined }],
      [{ constructor: 'c-1', toString: 't-1' }, { 'x-tostring': 't-1', 'x-ctor': 'c-1' }],
    ] as const) {
      const token = opaque(claims)
      for (let i = 0; i < 2; i++) {
        const res = await call(g, token)
        expect(res.status).toBe(200)
        const headers = res.json<Echoed>().headers
        expect({ 'x-tostring': headers['x-tostring'], 'x-ctor': headers['x-ctor'] }).toEqual(expected)
      }
    }
  })

  it('authenticates to the endpoint with client_secret_post as well', async () => {
    const g = await gateway({ authMethod: 'client_secret_post' })
    expect((await call(g, opaque({}))).status).toBe(200)
    expect(asA.lastAuth).toBe('post')
  })

  it('inactive: 401 token_inactive, cached for negative_ttl only', async () => {
    const g = await gateway({ negativeTtl: '300ms' })
    const token = opaque(null)
    const res = await call(g, token)
    expect(res.status).toBe(401)
    expect(res.headers['www-authenticate']).toContain('error="invalid_token"')
    expect(await reasonOf(g, res)).toBe('token_inactive')
    await call(g, token)
    expect(asA.calls.get(token)).toBe(1)
    await new Promise((r) => setTimeout(r, 350))
    await call(g, token)
    expect(asA.calls.get(token)).toBe(2)
  })

  it('1,000 concurrent requests with one new token make one introspection call', async () => {
    const g = await gateway()
    const token = opaque({})
    const results = await Promise.all(Array.from({ length: 1000 }, () => call(g, token)))
    expect(results.filter((r) => r.status !== 200)).toEqual([])
    expect(asA.calls.get(token)).toBe(1)
  })
})

describe('decisions on every request, cached or not', () => {
  it('a token cached as active for one route is refused on a route needing another scope', async () => {
    const g = await gateway()
    const token = opaque({ scope: 'read' })
    expect((await call(g, token, '/read/x')).status).toBe(200)
    const res = await call(g, token, '/write/x')
    expect(res.status).toBe(403)
    expect(res.headers['www-authenticate']).toContain('scope="write"')
    expect(asA.calls.get(token)).toBe(1)
  })

  it('a token vouched for by issuer A is refused on a route that trusts only B, even when cached', async () => {
    const g = await gateway()
    const token = opaque({})
    expect((await call(g, token, '/read/x')).status).toBe(200)
    const res = await call(g, token, '/b/x')
    expect(res.status).toBe(401)
    expect(await reasonOf(g, res)).toBe('token_inactive')
    expect(asB.calls.get(token)).toBe(1) // asked B's own endpoint: A's result is not reused
  })

  it('checks iss, aud, exp, nbf and the token type of active responses', async () => {
    const g = await gateway()
    const now = Math.floor(Date.now() / 1000)
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ iss: ISS_B }, 'issuer_untrusted'],
      [{ aud: 'other' }, 'audience_invalid'],
      [{ aud: undefined }, 'audience_invalid'],
      [{ exp: now - 60 }, 'token_expired'],
      [{ nbf: now + 120 }, 'token_not_yet_valid'],
      [{ token_type: 'refresh_token' }, 'type_invalid'],
      [{ token_use: 'refresh_token' }, 'type_invalid'],
      [{ scope: 42 }, 'claims_invalid'],
    ]
    for (const [claims, reason] of cases) {
      const res = await call(g, opaque(claims))
      expect(res.status, JSON.stringify(claims)).toBe(401)
      expect(await reasonOf(g, res), JSON.stringify(claims)).toBe(reason)
    }
    expect((await call(g, opaque({ iss: undefined, aud: ['x', 'api'], token_type: 'Bearer' }))).status).toBe(200)
  })

  it('a cached result never outlives the token exp', async () => {
    const g = await gateway()
    const token = opaque({ exp: Math.floor(Date.now() / 1000) + 1 })
    expect((await call(g, token)).status).toBe(200)
    await new Promise((r) => setTimeout(r, 2100))
    const res = await call(g, token)
    expect(res.status).toBe(401)
    expect(await reasonOf(g, res)).toBe('token_expired')
    expect(asA.calls.get(token)).toBe(2) // the cached result had expired with the token
  })

  it('revocation is seen once max_ttl has passed', async () => {
    const g = await gateway({ maxTtl: '400ms' })
    const token = opaque({})
    expect((await call(g, token)).status).toBe(200)
    asA.tokens.delete(token) // revoked at the authorization server
    expect((await call(g, token)).status).toBe(200) // still cached, as documented
    await new Promise((r) => setTimeout(r, 450))
    expect((await call(g, token)).status).toBe(401)
  })
})

describe('outages of the introspection endpoint fail closed', () => {
  for (const mode of ['error', 'garbage', 'no-active', 'slow'] as const) {
    it(`${mode}: 503, never cached, retried on the next request`, async () => {
      const g = await gateway()
      const token = opaque({})
      asA.mode = mode
      const res = await call(g, token)
      expect(res.status).toBe(503)
      expect(res.json()).toMatchObject({ error: 'temporarily_unavailable' })
      expect(await reasonOf(g, res)).toBe('dependency_unavailable')
      asA.mode = 'ok'
      expect((await call(g, token)).status).toBe(200)
      expect(asA.calls.get(token)).toBe(2)
    })
  }

  it('wrong gateway credentials at the endpoint: 503, never an allow', async () => {
    const g = await startGateway(config().replace('client_secret: "s3cret: +/%"', 'client_secret: wrong'))
    gateways.push(g)
    expect((await call(g, opaque({}))).status).toBe(503)
  })

  it('an unreachable endpoint: 503', async () => {
    const g = await startGateway(config().replace(asA.endpoint, 'http://127.0.0.1:1/introspect'))
    gateways.push(g)
    expect((await call(g, opaque({}))).status).toBe(503)
  })
})

describe('JWTs and introspection', () => {
  const jwt = (extra: Record<string, unknown> = {}) => sign(key, { iss: ISS_A, aud: 'api', sub: 's', scope: 'read', ...extra })

  it('auto: a JWT is verified locally, without an introspection call', async () => {
    const g = await gateway()
    const before = asA.totalCalls()
    expect((await call(g, await jwt())).status).toBe(200)
    expect(asA.totalCalls()).toBe(before)
  })

  it('jwt_and_introspection: a revoked JWT with a valid signature is refused', async () => {
    const g = await gateway()
    const token = await jwt()
    const res = await call(g, token, '/revocable/x')
    expect(res.status).toBe(401)
    expect(await reasonOf(g, res)).toBe('token_inactive')
    asA.tokens.set(token, { active: true, iss: ISS_A, aud: 'api', scope: 'read' })
    const g2 = await gateway()
    expect((await call(g2, token, '/revocable/x')).status).toBe(200)
  })

  it('jwt_and_introspection: a JWT already verified (and cached) on a jwt-only route is still introspected', async () => {
    const g = await gateway()
    const token = await jwt({ jti: 'cached-then-revocable' })
    expect((await call(g, token, '/read/x')).status).toBe(200) // auto: verified locally, now cached
    expect((await call(g, token, '/read/x')).status).toBe(200) // served by the verified-token cache
    const before = asA.calls.get(token) ?? 0
    const res = await call(g, token, '/revocable/x') // unknown to the endpoint: inactive
    expect(res.status).toBe(401)
    expect(await reasonOf(g, res)).toBe('token_inactive')
    expect(asA.calls.get(token)).toBe(before + 1)
  })

  it('jwt_and_introspection: a forged JWT is refused before any introspection call', async () => {
    const g = await gateway()
    const forged = await sign(await makeKey('ES256', key.kid), { iss: ISS_A, aud: 'api', scope: 'read' })
    const before = asA.totalCalls()
    expect((await call(g, forged, '/revocable/x')).status).toBe(401)
    expect(asA.totalCalls()).toBe(before)
  })
})

describe('the shared Redis tier', () => {
  it('two gateway instances sharing Redis make one introspection call between them', async () => {
    const g1 = await gateway({ redis: true })
    const g2 = await gateway({ redis: true })
    await waitForRedis(g1, g2)
    const token = opaque({})
    const first = await Promise.all(Array.from({ length: 200 }, () => call(g1, token)))
    const second = await Promise.all(Array.from({ length: 200 }, () => call(g2, token)))
    expect([...first, ...second].every((r) => r.status === 200)).toBe(true)
    expect(asA.calls.get(token)).toBe(1)
  })
})

export async function waitForRedis(...gs: TestGateway[]): Promise<void> {
  for (let i = 0; i < 100 && !gs.every((g) => g.gateway.sharedStore?.up); i++) await new Promise((r) => setTimeout(r, 20))
  expect(gs.every((g) => g.gateway.sharedStore?.up)).toBe(true)
}
