import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { bearer, send, startEchoUpstream, type Listening } from '../helpers/servers.js'

// Verified JWTs are cached so that repeated tokens skip signature checks.
// The cache must never let a token through where verifying it would not.

const ISS = 'https://shared-iss.example'
let key: TestKey
let jwks: JwksServer
let upstream: Listening
let g: TestGateway

beforeAll(async () => {
  key = await makeKey('ES256')
  jwks = await startJwksServer([key.publicJwk])
  upstream = await startEchoUpstream()
  g = await startGateway(`
upstreams: { api: { url: "${upstream.url}" } }
issuers:
  # One authorization server, two audiences: two issuer entries with the same iss.
  - { id: for-a, issuer: "${ISS}", jwks_uri: "${jwks.jwksUri}", audiences: [api-a], clock_skew: 0s }
  - { id: for-b, issuer: "${ISS}", jwks_uri: "${jwks.jwksUri}", audiences: [api-b], clock_skew: 0s, jwks: { cooldown: 50ms, max_age: 100ms } }
routes:
  - { id: a, match: { path: /a }, upstream: api, auth: { issuers: [for-a], scopes: { all_of: [read] } } }
  - { id: b, match: { path: /b }, upstream: api, auth: { issuers: [for-b], scopes: { all_of: [read] } } }
  - { id: b-admin, match: { path: /b-admin }, upstream: api, auth: { issuers: [for-b], scopes: { all_of: [admin] } } }
`)
})
afterAll(async () => {
  await g.close()
  await upstream.close()
  await jwks.close()
})

const call = (path: string, token: string) => send(g.url, { path, headers: [bearer(token)] })

describe('the verified-token cache', () => {
  it('never carries a verification across issuers sharing an iss', async () => {
    const token = await sign(key, { iss: ISS, aud: 'api-a', scope: 'read' })
    expect((await call('/a', token)).status).toBe(200)
    expect((await call('/a', token)).status).toBe(200) // cached now
    const res = await call('/b', token)
    expect(res.status).toBe(401)
    expect((await g.requestLog(res.headers['x-request-id'])).reason).toBe('audience_invalid')
  })

  it('still checks scopes on every hit', async () => {
    const token = await sign(key, { iss: ISS, aud: 'api-b', scope: 'read' })
    expect((await call('/b', token)).status).toBe(200)
    expect((await call('/b-admin', token)).status).toBe(403)
  })

  it('forgets a token at its exp', async () => {
    const token = await sign(key, { iss: ISS, aud: 'api-a', scope: 'read' }, { expiresIn: 1 })
    expect((await call('/a', token)).status).toBe(200)
    await new Promise((r) => setTimeout(r, 1200))
    expect((await call('/a', token)).status).toBe(401)
  })

  it('forgets verifications made with keys the issuer withdrew', async () => {
    const token = await sign(key, { iss: ISS, aud: 'api-b', scope: 'read' })
    expect((await call('/b', token)).status).toBe(200)
    const other = await makeKey('ES256')
    jwks.keys = [other.publicJwk] // the key is withdrawn (compromised, rotated out)
    await new Promise((r) => setTimeout(r, 150))
    await call('/b', await sign(other, { iss: ISS, aud: 'api-b', scope: 'read' })) // the background refresh happens
    await new Promise((r) => setTimeout(r, 50))
    const res = await call('/b', token)
    expect(res.status).toBe(401)
    expect((await g.requestLog(res.headers['x-request-id'])).reason).toBe('key_unknown')
    jwks.keys = [key.publicJwk]
  })

  it('a tampered copy of a cached token is verified, and refused', async () => {
    const token = await sign(key, { iss: ISS, aud: 'api-a', scope: 'read' })
    expect((await call('/a', token)).status).toBe(200)
    const tampered = token.slice(0, -2) + (token.endsWith('AA') ? 'AB' : 'AA')
    expect((await call('/a', tampered)).status).toBe(401)
  })
})
