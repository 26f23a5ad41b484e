import { generateKeyPairSync } from 'node:crypto'
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashSecret } from '../../src/authorization-server/secret-hash.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { freePort } from '../helpers/redis.js'
import { bearer, send, type RawResponse } from '../helpers/servers.js'

// The Client Credentials flow over real HTTP: client registration (YAML) →
// token request → client authentication → token issuance → call with Bearer → renewal.

const SECRET = 'orders-service-secret-0123'
let gw: TestGateway
let issuer: string

interface Echo {
  method: string
  path: string
  headers: Record<string, string>
}

beforeAll(async () => {
  const port = await freePort()
  issuer = `http://127.0.0.1:${port}`
  const hash = await hashSecret(SECRET)
  const { privateKey: older } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const { privateKey: current } = generateKeyPairSync('ed25519')
  gw = await startGateway(
    `
authorization_server:
  issuer: ${issuer}
  keys:
    - { file: current.pem, kid: current }
    - { file: older.pem, kid: older }
  throttle: { failures: 3, window: 2s }
  clients:
    - client_id: orders-service
      secret_hash: "${hash}"
      scopes: [orders:read, orders:write]
      default_scopes: [orders:read]
      audiences: [orders-api]
    - client_id: short-lived
      secret_hash: "${hash}"
      scopes: [orders:read]
      default_scopes: [orders:read]
      audiences: [orders-api]
      token_lifetime: 1s
    - client_id: monitor
      secret_hash: "${hash}"
      scopes: []
      audiences: [orders-api]
      introspect: true
issuers:
  - { id: local, issuer: "${issuer}", jwks_uri: "${issuer}/.well-known/jwks.json", audiences: [orders-api], require_typ: at+jwt, clock_skew: 0s }
protected_resource: { resource: "${issuer}/api" }
upstreams: { echo: { echo: true } }
routes:
  - id: read
    match: { path: /api/orders/*, methods: [GET] }
    upstream: echo
    strip_prefix: /api
    auth: { issuers: [local], scopes: { all_of: [orders:read] } }
  - id: write
    match: { path: /api/orders/*, methods: [POST] }
    upstream: echo
    auth: { issuers: [local], scopes: { all_of: [orders:write] } }
`,
    {
      'current.pem': current.export({ type: 'pkcs8', format: 'pem' }) as string,
      'older.pem': older.export({ type: 'pkcs8', format: 'pem' }) as string,
    },
    { port },
  )
})
afterAll(() => gw.close())

const basic = (id: string, secret: string) => ['Authorization', `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`] as [string, string]
const FORM: [string, string] = ['Content-Type', 'application/x-www-form-urlencoded']

function tokenRequest(body: string, headers: Array<[string, string]> = []): Promise<RawResponse> {
  return send(gw.url, { method: 'POST', path: '/oauth2/token', headers: [FORM, ...headers], body })
}

async function getToken(client = 'orders-service', scope?: string): Promise<string> {
  const res = await tokenRequest(`grant_type=client_credentials${scope ? `&scope=${encodeURIComponent(scope)}` : ''}`, [basic(client, SECRET)])
  expect(res.status).toBe(200)
  return res.json<{ access_token: string }>().access_token
}

function expectTokenError(res: RawResponse, status: number, error: string): void {
  expect(res.status).toBe(status)
  expect(res.json()).toMatchObject({ error })
  expect(res.headers['cache-control']).toBe('no-store')
}

describe('the client credentials flow', () => {
  it('token request → call with Bearer → 200 with X-Client-Id of the client', async () => {
    const res = await tokenRequest('grant_type=client_credentials', [basic('orders-service', SECRET)])
    expect(res.status).toBe(200)
    expect(res.headers['cache-control']).toBe('no-store')
    expect(res.headers.pragma).toBe('no-cache')
    const body = res.json<{ access_token: string; token_type: string; expires_in: number; scope: string }>()
    expect(body).toMatchObject({ token_type: 'Bearer', expires_in: 600, scope: 'orders:read' })

    const call = await send(gw.url, { path: '/api/orders/7', headers: [bearer(body.access_token)] })
    expect(call.status).toBe(200)
    const echo = call.json<Echo>()
    expect(echo.path).toBe('/orders/7')
    expect(echo.headers['x-client-id']).toBe('orders-service')
    expect(echo.headers['x-scopes']).toBe('orders:read')
    expect(echo.headers.authorization).toBeUndefined()
  })

  it('client_secret_post works as well, and requested scopes are granted', async () => {
    const res = await tokenRequest(`grant_type=client_credentials&scope=orders%3Awrite+orders%3Aread&client_id=orders-service&client_secret=${SECRET}`)
    expect(res.status).toBe(200)
    expect(res.json()).toMatchObject({ scope: 'orders:write orders:read' })
    const call = await send(gw.url, { method: 'POST', path: '/api/orders', headers: [bearer(res.json<{ access_token: string }>().access_token)], body: '{}' })
    expect(call.status).toBe(200)
  })

  it('a wrong secret is 401 invalid_client with a Basic challenge', async () => {
    const res = await tokenRequest('grant_type=client_credentials', [basic('orders-service', 'wrong-secret-123456')])
    expectTokenError(res, 401, 'invalid_client')
    expect(res.headers['www-authenticate']).toMatch(/^Basic realm=/)
    expectTokenError(await tokenRequest('grant_type=client_credentials&client_id=nobody&client_secret=whatever-123456'), 401, 'invalid_client')
  })

  it('a scope the client may not have is 400 invalid_scope', async () => {
    expectTokenError(await tokenRequest('grant_type=client_credentials&scope=orders%3Aadmin', [basic('orders-service', SECRET)]), 400, 'invalid_scope')
    expectTokenError(await tokenRequest('grant_type=client_credentials&scope=orders%3Awrite', [basic('short-lived', SECRET)]), 400, 'invalid_scope')
  })

  it('an expired token is 401; a new token request renews access', async () => {
    const first = await getToken('short-lived')
    expect((await send(gw.url, { path: '/api/orders/1', headers: [bearer(first)] })).status).toBe(200)
    await new Promise((r) => setTimeout(r, 2100))
    const expired = await send(gw.url, { path: '/api/orders/1', headers: [bearer(first)] })
    expect(expired.status).toBe(401)
    expect(expired.headers['www-authenticate']).toContain('error_description="the token has expired"')
    const renewed = await getToken('short-lived')
    expect(renewed).not.toBe(first)
    expect((await send(gw.url, { path: '/api/orders/1', headers: [bearer(renewed)] })).status).toBe(200)
  })
})

describe('token endpoint requests that are refused', () => {
  it('two client authentication methods, or none', async () => {
    expectTokenError(await tokenRequest(`grant_type=client_credentials&client_id=orders-service&client_secret=${SECRET}`, [basic('orders-service', SECRET)]), 400, 'invalid_request')
    expectTokenError(await tokenRequest('grant_type=client_credentials'), 401, 'invalid_client')
    expectTokenError(await tokenRequest('grant_type=client_credentials&client_id=orders-service'), 401, 'invalid_client')
  })

  it('grant types, duplicated parameters and the wrong content type', async () => {
    expectTokenError(await tokenRequest('grant_type=password&username=a&password=b', [basic('orders-service', SECRET)]), 400, 'unsupported_grant_type')
    expectTokenError(await tokenRequest('scope=orders%3Aread', [basic('orders-service', SECRET)]), 400, 'invalid_request')
    expectTokenError(await tokenRequest('grant_type=client_credentials&scope=orders%3Aread&scope=orders%3Awrite', [basic('orders-service', SECRET)]), 400, 'invalid_request')
    const json = await send(gw.url, { method: 'POST', path: '/oauth2/token', headers: [['Content-Type', 'application/json'], basic('orders-service', SECRET)], body: '{"grant_type":"client_credentials"}' })
    expectTokenError(json, 400, 'invalid_request')
    expect((await send(gw.url, { path: '/oauth2/token' })).status).toBe(404)
  })

  it('repeated failures for one client id are throttled, even with the right secret then', async () => {
    for (let i = 0; i < 3; i++) expectTokenError(await tokenRequest('grant_type=client_credentials', [basic('monitor', 'nope-nope-nope-nope')]), 401, 'invalid_client')
    const blocked = await tokenRequest('grant_type=client_credentials', [basic('monitor', SECRET)])
    expect(blocked.status).toBe(429)
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThanOrEqual(1)
    // Other clients are not affected.
    expect((await tokenRequest('grant_type=client_credentials', [basic('orders-service', SECRET)])).status).toBe(200)
    await new Promise((r) => setTimeout(r, 2100))
    expect((await tokenRequest('grant_type=client_credentials', [basic('monitor', SECRET)])).status).toBe(200)
  })
})

describe('tokens, keys and metadata', () => {
  it('tokens are RFC 9068 JWTs signed by the first key', async () => {
    const token = await getToken('orders-service', 'orders:read orders:write')
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'EdDSA', kid: 'current', typ: 'at+jwt' })
    const claims = decodeJwt(token)
    expect(claims).toMatchObject({ iss: issuer, sub: 'orders-service', client_id: 'orders-service', aud: 'orders-api', scope: 'orders:read orders:write' })
    expect(claims.exp! - claims.iat!).toBe(600)
    expect(typeof claims.jti).toBe('string')
    expect(decodeJwt(await getToken()).jti).not.toBe(claims.jti)
  })

  it('are verified by an independent library against the published JWKS', async () => {
    const token = await getToken()
    const jwks = createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks.json`))
    const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer, audience: 'orders-api', typ: 'at+jwt' })
    expect(payload.client_id).toBe('orders-service')
    expect(protectedHeader.kid).toBe('current')
  })

  it('are accepted by another gateway that knows only the jwks_uri', async () => {
    const other = await startGateway(`
issuers: [{ id: remote, issuer: "${issuer}", jwks_uri: "${issuer}/.well-known/jwks.json", audiences: [orders-api] }]
upstreams: { echo: { echo: true } }
routes: [{ id: r, match: { path: /x }, upstream: echo, auth: { issuers: [remote], scopes: { all_of: [orders:read] } } }]
`)
    try {
      const res = await send(other.url, { path: '/x', headers: [bearer(await getToken())] })
      expect(res.status).toBe(200)
      expect(res.json<Echo>().headers['x-client-id']).toBe('orders-service')
    } finally {
      await other.close()
    }
  })

  it('publishes every key, public parts only', async () => {
    const res = await send(gw.url, { path: '/.well-known/jwks.json' })
    expect(res.status).toBe(200)
    const { keys } = res.json<{ keys: Array<Record<string, string>> }>()
    expect(keys.map((k) => [k.kid, k.alg, k.use])).toEqual([
      ['current', 'EdDSA', 'sig'],
      ['older', 'ES256', 'sig'],
    ])
    for (const k of keys) expect(k.d).toBeUndefined()
  })

  it('RFC 8414 metadata, field by field', async () => {
    const res = await send(gw.url, { path: '/.well-known/oauth-authorization-server' })
    expect(res.status).toBe(200)
    expect(res.json()).toEqual({
      issuer,
      token_endpoint: `${issuer}/oauth2/token`,
      jwks_uri: `${issuer}/.well-known/jwks.json`,
      introspection_endpoint: `${issuer}/oauth2/introspect`,
      revocation_endpoint: `${issuer}/oauth2/revoke`,
      grant_types_supported: ['client_credentials'],
      response_types_supported: [],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      scopes_supported: ['orders:read', 'orders:write'],
      dpop_signing_alg_values_supported: ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA'],
      tls_client_certificate_bound_access_tokens: false,
    })
  })

  it('RFC 9728 protected resource metadata, named in 401 challenges', async () => {
    const res = await send(gw.url, { path: '/.well-known/oauth-protected-resource/api' })
    expect(res.json()).toEqual({
      resource: `${issuer}/api`,
      authorization_servers: [issuer],
      scopes_supported: ['orders:read', 'orders:write'],
      bearer_methods_supported: ['header'],
      dpop_signing_alg_values_supported: ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA'],
      dpop_bound_access_tokens_required: false,
      tls_client_certificate_bound_access_tokens: false,
    })
    const denied = await send(gw.url, { path: '/api/orders/1' })
    expect(denied.headers['www-authenticate']).toBe(`Bearer realm="gateway", resource_metadata="${issuer}/.well-known/oauth-protected-resource/api"`)
  })
})

describe('introspection of its own tokens (RFC 7662)', () => {
  const introspect = (token: string, auth: [string, string][]) =>
    send(gw.url, { method: 'POST', path: '/oauth2/introspect', headers: [FORM, ...auth], body: `token=${encodeURIComponent(token)}` })

  it('answers for allowed clients', async () => {
    const token = await getToken()
    const res = await introspect(token, [basic('monitor', SECRET)])
    expect(res.status).toBe(200)
    expect(res.json()).toMatchObject({ active: true, client_id: 'orders-service', scope: 'orders:read', iss: issuer, aud: 'orders-api', token_type: 'Bearer' })
    expect((await introspect('garbage', [basic('monitor', SECRET)])).json()).toEqual({ active: false })
  })

  it('refuses unauthenticated callers and clients not allowed to introspect', async () => {
    const token = await getToken()
    expectTokenError(await introspect(token, []), 401, 'invalid_client')
    expectTokenError(await introspect(token, [basic('orders-service', SECRET)]), 403, 'unauthorized_client')
  })
})
