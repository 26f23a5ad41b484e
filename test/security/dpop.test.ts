import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { bearer, send, startEchoUpstream, type Echoed, type Listening } from '../helpers/servers.js'
import { dpopAuth, makeDpopKey, proof, type DpopKey, type ProofOptions } from '../helpers/dpop.js'

// DPoP (RFC 9449) at the resource: every check of §4.3 has a proof that
// fails it, and nothing reaches the upstream when one does. A DPoP-bound
// token is useless as a bearer token, on every route; an unbound one is
// refused under the DPoP scheme; routes that require binding refuse
// unbound tokens. Replays are refused; nonces are asked for and rotated.

const ISS = 'https://dpop.test.example'
let upstream: Listening & { received: Echoed[] }
let jwks: JwksServer
let key: TestKey
let client: DpopKey
let other: DpopKey
let g: TestGateway
let boundToken: string
let unboundToken: string

const config = (extra = '') => `
issuers:
  - id: corp
    issuer: ${ISS}
    jwks_uri: ${jwks.jwksUri}
    audiences: [api]
upstreams:
  api: { url: "${upstream.url}" }
routes:
  - id: api
    match: { path: /api/* }
    upstream: api
    auth: { issuers: [corp], scopes: none }
  - id: dpop-only
    match: { path: /dpop-only/* }
    upstream: api
    auth: { issuers: [corp], scopes: none, binding: dpop }
  - id: public
    match: { path: /public/* }
    upstream: api
    auth: public
${extra}`

beforeAll(async () => {
  upstream = await startEchoUpstream()
  key = await makeKey('ES256')
  jwks = await startJwksServer([key.publicJwk])
  client = makeDpopKey('ES256')
  other = makeDpopKey('ES256')
  boundToken = await sign(key, { iss: ISS, aud: 'api', sub: 'alice', client_id: 'app', cnf: { jkt: client.jkt } })
  unboundToken = await sign(key, { iss: ISS, aud: 'api', sub: 'bob', client_id: 'app' })
  g = await startGateway(config())
})
afterAll(async () => {
  await g.close()
  await jwks.close()
  await upstream.close()
})

const htuOf = (path: string) => `${g.url}${path.split('?')[0]}`

/** Sends a request with the DPoP scheme and the given proof headers. */
async function call(path: string, proofs: string[], token = boundToken, method = 'GET') {
  const before = upstream.received.length
  const res = await send(g.url, { method, path, headers: [dpopAuth(token), ...proofs.map((p): [string, string] => ['DPoP', p])] })
  return { res, forwarded: upstream.received.length > before }
}

const good = (overrides: Partial<ProofOptions> = {}, path = '/api/x', method = 'GET') => proof(client, { htm: method, htu: htuOf(path), token: boundToken, ...overrides })

describe('DPoP at the resource', () => {
  it('a bound token with a valid proof is forwarded, without the token and proof', async () => {
    const { res, forwarded } = await call('/api/x', [good()])
    expect(res.status).toBe(200)
    expect(forwarded).toBe(true)
    const seen = upstream.received.at(-1)!
    expect(seen.headers['x-subject']).toBe('alice')
    expect(seen.headers.authorization).toBeUndefined()
    expect(seen.headers.dpop).toBeUndefined()
  })

  it('works with ES384, RS256, PS256 and EdDSA proof keys', async () => {
    for (const alg of ['ES384', 'RS256', 'PS256', 'EdDSA'] as const) {
      const k = makeDpopKey(alg)
      const token = await sign(key, { iss: ISS, aud: 'api', sub: 'alice', cnf: { jkt: k.jkt } })
      const res = await send(g.url, { path: '/api/y', headers: [dpopAuth(token), ['DPoP', proof(k, { htm: 'GET', htu: htuOf('/api/y'), token })]] })
      expect(res.status, alg).toBe(200)
    }
  })

  // RFC 9449 §4.3, one failing proof per check (and variants of each).
  const failing: Array<[string, () => string[] | Promise<string[]>, string]> = [
    ['no DPoP header', () => [], 'dpop_proof_invalid'],
    ['two DPoP headers', () => [good(), good()], 'dpop_proof_invalid'],
    ['an empty DPoP header', () => [''], 'dpop_proof_invalid'],
    ['not a JWT', () => ['not-a-jwt'], 'dpop_proof_invalid'],
    ['an unsigned JWT (alg none)', () => [good({ header: { alg: 'none' } }).split('.').slice(0, 2).join('.') + '.'], 'dpop_proof_invalid'],
    ['typ missing', () => [good({ header: { typ: undefined } })], 'dpop_proof_invalid'],
    ['typ JWT', () => [good({ header: { typ: 'JWT' } })], 'dpop_proof_invalid'],
    ['typ dpop', () => [good({ header: { typ: 'dpop' } })], 'dpop_proof_invalid'],
    ['typ application/jwt', () => [good({ header: { typ: 'application/jwt' } })], 'dpop_proof_invalid'],
    ['typ dpop+jwt with a parameter', () => [good({ header: { typ: 'dpop+jwt; charset=utf-8' } })], 'dpop_proof_invalid'],
    ['alg HS256', () => [good({ header: { alg: 'HS256' } })], 'dpop_proof_invalid'],
    ['alg none', () => [good({ header: { alg: 'none' } })], 'dpop_proof_invalid'],
    ['alg that does not fit the key', () => [good({ header: { alg: 'RS256' } })], 'dpop_proof_invalid'],
    ['a bad signature', () => [good({ tamper: true })], 'dpop_proof_invalid'],
    ['signed by another key than its jwk', () => [good({ signWith: other })], 'dpop_proof_invalid'],
    ['no jwk', () => [good({ header: { jwk: undefined } })], 'dpop_proof_invalid'],
    ['a jwk with its private key', () => [good({ header: { jwk: { ...client.jwk, d: client.privateKey.export({ format: 'jwk' }).d } } })], 'dpop_proof_invalid'],
    ['a jwk given as a string', () => [good({ header: { jwk: JSON.stringify(client.jwk) } })], 'dpop_proof_invalid'],
    ['crit header', () => [good({ header: { crit: ['exp'] } })], 'dpop_proof_invalid'],
    ['htm of another method', () => [good({ htm: 'POST' })], 'dpop_proof_invalid'],
    ['htm in lower case', () => [good({ htm: 'get' })], 'dpop_proof_invalid'],
    ['htm missing', () => [good({ claims: { htm: undefined } })], 'dpop_proof_invalid'],
    ['htu of another path', () => [good({ htu: htuOf('/api/other') })], 'dpop_proof_invalid'],
    ['htu of another host', () => [good({ htu: htuOf('/api/x').replace('127.0.0.1', 'localhost') })], 'dpop_proof_invalid'],
    ['htu with https', () => [good({ htu: htuOf('/api/x').replace('http:', 'https:') })], 'dpop_proof_invalid'],
    ['htu relative', () => [good({ htu: '/api/x' })], 'dpop_proof_invalid'],
    ['htu missing', () => [good({ claims: { htu: undefined } })], 'dpop_proof_invalid'],
    ['htu with encoded slash', () => [good({ htu: htuOf('/api%2Fx') })], 'dpop_proof_invalid'],
    ['iat too old', () => [good({ claims: { iat: Math.floor(Date.now() / 1000) - 3600 } })], 'dpop_proof_invalid'],
    ['iat in the future', () => [good({ claims: { iat: Math.floor(Date.now() / 1000) + 3600 } })], 'dpop_proof_invalid'],
    ['iat as a string', () => [good({ claims: { iat: String(Math.floor(Date.now() / 1000)) } })], 'dpop_proof_invalid'],
    ['iat missing', () => [good({ claims: { iat: undefined } })], 'dpop_proof_invalid'],
    ['ath missing', () => [good({ claims: { ath: undefined } })], 'dpop_proof_invalid'],
    ['ath of another token', () => [good({ token: unboundToken })], 'dpop_proof_invalid'],
    ['jti missing', () => [good({ claims: { jti: undefined } })], 'dpop_proof_invalid'],
    ['jti empty', () => [good({ claims: { jti: '' } })], 'dpop_proof_invalid'],
    ['jti as a number', () => [good({ claims: { jti: 12345 } })], 'dpop_proof_invalid'],
    ['a valid proof by a key the token is not bound to', () => [proof(other, { htm: 'GET', htu: htuOf('/api/x'), token: boundToken })], 'token_binding_mismatch'],
    ['a proof too long', () => [good({ claims: { pad: 'x'.repeat(9000) } })], 'dpop_proof_invalid'],
    ['an RSA key of 1024 bits', () => {
      const weak = makeDpopKey('RS256', 1024)
      return [proof(weak, { htm: 'GET', htu: htuOf('/api/x'), token: boundToken })]
    }, 'dpop_proof_invalid'],
  ]
  for (const [name, proofs, code] of failing) {
    it(`refuses a proof with ${name} (401 ${code}), nothing forwarded`, async () => {
      const { res, forwarded } = await call('/api/x', await proofs())
      expect(res.status).toBe(401)
      expect(forwarded).toBe(false)
      expect(res.headers['www-authenticate']).toMatch(/^DPoP /)
      expect(res.headers['www-authenticate']).toContain('algs="')
      const line = await g.requestLog(res.headers['x-request-id'])
      expect(line.reason).toBe(code)
    })
  }

  it('accepts typ as the media type it is (RFC 7515 §4.1.9): any case, with or without "application/"', async () => {
    for (const typ of ['DPoP+JWT', 'application/dpop+jwt', 'Application/DPOP+jwt']) {
      const { res } = await call('/api/x', [good({ header: { typ } })])
      expect(res.status, typ).toBe(200)
    }
  })

  it('accepts htu spellings RFC 3986 normalisation makes equal (case of scheme and host, default port, encoded unreserved characters)', async () => {
    const base = new URL(g.url)
    for (const htu of [`HTTP://${base.host.toUpperCase()}/api/x`, `${g.url}/api/%78`, `${g.url}/api/x?query=ignored`, `${g.url}/api/x#frag`]) {
      const { res } = await call('/api/x', [good({ htu })])
      expect(res.status, htu).toBe(200)
    }
  })

  it('a replayed proof is refused (the same jti), even on another path it does not name', async () => {
    const p = good({ claims: { jti: 'replay-me' } })
    expect((await call('/api/x', [p])).res.status).toBe(200)
    const again = await call('/api/x', [p])
    expect(again.res.status).toBe(401)
    expect(again.forwarded).toBe(false)
    expect((await g.requestLog(again.res.headers['x-request-id'])).reason).toBe('dpop_proof_replayed')
  })

  it('a refused proof is not remembered: the same jti in a valid proof later passes', async () => {
    expect((await call('/api/x', [good({ claims: { jti: 'first-bad' }, htm: 'POST' })])).res.status).toBe(401)
    expect((await call('/api/x', [good({ claims: { jti: 'first-bad' } })])).res.status).toBe(200)
  })

  it('a DPoP-bound token sent as Bearer is refused on every protected route (401 token_binding_missing)', async () => {
    for (const path of ['/api/x', '/dpop-only/x']) {
      const before = upstream.received.length
      const res = await send(g.url, { path, headers: [bearer(boundToken), ['DPoP', good({}, path)]] })
      expect(res.status).toBe(401)
      expect(upstream.received.length).toBe(before)
      expect((await g.requestLog(res.headers['x-request-id'])).reason).toBe('token_binding_missing')
    }
  })

  it('an unbound token under the DPoP scheme is refused (token_binding_mismatch)', async () => {
    const res = await send(g.url, { path: '/api/x', headers: [dpopAuth(unboundToken), ['DPoP', proof(client, { htm: 'GET', htu: htuOf('/api/x'), token: unboundToken })]] })
    expect(res.status).toBe(401)
    expect((await g.requestLog(res.headers['x-request-id'])).reason).toBe('token_binding_mismatch')
  })

  it('binding: dpop refuses unbound bearer tokens with a DPoP challenge; optional routes take them', async () => {
    const refused = await send(g.url, { path: '/dpop-only/x', headers: [bearer(unboundToken)] })
    expect(refused.status).toBe(401)
    expect(refused.headers['www-authenticate']).toMatch(/^DPoP realm="gateway", error="invalid_token"/)
    expect((await g.requestLog(refused.headers['x-request-id'])).reason).toBe('token_binding_required')
    expect((await send(g.url, { path: '/api/x', headers: [bearer(unboundToken)] })).status).toBe(200)
    expect((await call('/dpop-only/x', [good({}, '/dpop-only/x')])).res.status).toBe(200)
  })

  it('a cnf the gateway cannot check, or a malformed one, refuses the token', async () => {
    for (const cnf of [{ jwk: client.jwk }, { jkt: 'short' }, 'jkt', { 'x5t#S256': 12 }]) {
      const token = await sign(key, { iss: ISS, aud: 'api', sub: 'alice', cnf })
      const res = await send(g.url, { path: '/api/x', headers: [bearer(token)] })
      expect(res.status, JSON.stringify(cnf)).toBe(401)
    }
  })

  it('binding failures are counted by route and reason', async () => {
    const metrics = await g.gateway.metrics.registry.metrics()
    expect(metrics).toMatch(/gateway_token_binding_failures_total\{route="api",reason="dpop_proof_replayed"\} [1-9]/)
    expect(metrics).toMatch(/gateway_token_binding_failures_total\{route="api",reason="token_binding_missing"\} [1-9]/)
  })
})

describe('htu behind a TLS-terminating proxy', () => {
  const forwarded: Array<[string, string]> = [['X-Forwarded-Proto', 'https'], ['X-Forwarded-Host', 'api.example.com']]
  const htu = 'https://api.example.com/api/x'

  it('is the URI the client used, as a trusted proxy says it', async () => {
    const p = await startGateway(config().replace('issuers:', 'server: { trust_proxy: ["127.0.0.1"] }\nissuers:'))
    try {
      const ok = await send(p.url, { path: '/api/x', headers: [dpopAuth(boundToken), ['DPoP', proof(client, { htm: 'GET', htu, token: boundToken })], ...forwarded] })
      expect(ok.status).toBe(200)
      // The address the proxy reached the gateway on is not the client's URI.
      const direct = await send(p.url, { path: '/api/x', headers: [dpopAuth(boundToken), ['DPoP', proof(client, { htm: 'GET', htu: `${p.url}/api/x`, token: boundToken })], ...forwarded] })
      expect(direct.status).toBe(401)
    } finally {
      await p.close()
    }
  })

  it('is never taken from headers an untrusted peer sends', async () => {
    const res = await send(g.url, { path: '/api/x', headers: [dpopAuth(boundToken), ['DPoP', proof(client, { htm: 'GET', htu, token: boundToken })], ...forwarded] })
    expect(res.status).toBe(401)
    expect((await g.requestLog(res.headers['x-request-id'])).reason).toBe('dpop_proof_invalid')
  })
})

describe('DPoP server nonces', () => {
  let n: TestGateway
  beforeAll(async () => {
    n = await startGateway(config('dpop:\n  nonce: { secret: "a-shared-secret-of-at-least-32-characters", lifetime: 10s }\n'))
  })
  afterAll(() => n.close())

  it('asks for a nonce (401 use_dpop_nonce with DPoP-Nonce), accepts a proof with it, refuses a forged one', async () => {
    const htu = `${n.url}/api/x`
    const first = await send(n.url, { path: '/api/x', headers: [dpopAuth(boundToken), ['DPoP', proof(client, { htm: 'GET', htu, token: boundToken })]] })
    expect(first.status).toBe(401)
    expect(first.headers['www-authenticate']).toMatch(/^DPoP .*error="use_dpop_nonce"/)
    const nonce = first.headers['dpop-nonce'] as string
    expect(nonce).toMatch(/^[a-z0-9]+\.[A-Za-z0-9_-]+$/)
    const ok = await send(n.url, { path: '/api/x', headers: [dpopAuth(boundToken), ['DPoP', proof(client, { htm: 'GET', htu, token: boundToken, claims: { nonce } })]] })
    expect(ok.status).toBe(200)
    for (const forged of [nonce.slice(0, -2) + 'AA', `${(parseInt(nonce.split('.')[0]!, 36) + 5).toString(36)}.${nonce.split('.')[1]}`, 'x', 42]) {
      const res = await send(n.url, { path: '/api/x', headers: [dpopAuth(boundToken), ['DPoP', proof(client, { htm: 'GET', htu, token: boundToken, claims: { nonce: forged } })]] })
      expect(res.status, String(forged)).toBe(401)
    }
  })

  it('a nonce made by another replica with the same secret is accepted', async () => {
    const other = await startGateway(config('dpop:\n  nonce: { secret: "a-shared-secret-of-at-least-32-characters", lifetime: 10s }\n'))
    try {
      const first = await send(other.url, { path: '/api/x', headers: [dpopAuth(boundToken), ['DPoP', proof(client, { htm: 'GET', htu: `${other.url}/api/x`, token: boundToken })]] })
      const nonce = first.headers['dpop-nonce'] as string
      const res = await send(n.url, { path: '/api/x', headers: [dpopAuth(boundToken), ['DPoP', proof(client, { htm: 'GET', htu: `${n.url}/api/x`, token: boundToken, claims: { nonce } })]] })
      expect(res.status).toBe(200)
    } finally {
      await other.close()
    }
  })
})
