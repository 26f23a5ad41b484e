import { Agent } from 'node:http'
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
    await new Promise((r) => setTimeout(r, 150)) // past the cooldown: the next unknown kid fetches the set again
  })

  it('a tampered copy of a cached token is verified, and refused', async () => {
    const token = await sign(key, { iss: ISS, aud: 'api-a', scope: 'read' })
    expect((await call('/a', token)).status).toBe(200)
    const tampered = token.slice(0, -2) + (token.endsWith('AA') ? 'AB' : 'AA')
    expect((await call('/a', tampered)).status).toBe(401)
  })
})

// A connection remembers the last token it sent (the parse and the cache key
// are not computed again). Everything else must still happen on every request.
describe('on one keep-alive connection', () => {
  const onOneConnection = () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    const ports = new Set<number>()
    const call = async (path: string, headers: Array<[string, string]>, query = '') => {
      const res = await send(g.url, { path: path + query, headers, agent })
      ports.add(res.localPort)
      return res
    }
    return { call, ports, close: () => agent.destroy() }
  }
  const reason = async (res: { headers: Record<string, unknown> }) => (await g.requestLog(res.headers['x-request-id'] as string)).reason

  it('a tampered token after a good one is verified and refused, and the good one still passes', async () => {
    const c = onOneConnection()
    const token = await sign(key, { iss: ISS, aud: 'api-a', scope: 'read' })
    const tampered = token.slice(0, -2) + (token.endsWith('AA') ? 'AB' : 'AA')
    expect((await c.call('/a', [bearer(token)])).status).toBe(200)
    expect((await c.call('/a', [bearer(token)])).status).toBe(200)
    const refused = await c.call('/a', [bearer(tampered)])
    expect(refused.status).toBe(401)
    expect(await reason(refused)).toBe('signature_invalid')
    expect((await c.call('/a', [['Authorization', `bearer  ${token}`]])).status).toBe(200) // another spelling of the same credential
    expect((await c.call('/a', [bearer(token)])).status).toBe(200)
    expect(c.ports.size).toBe(1)
    c.close()
  })

  it('the remembered header is still checked for a second token, on every request', async () => {
    const c = onOneConnection()
    const token = await sign(key, { iss: ISS, aud: 'api-a', scope: 'read' })
    expect((await c.call('/a', [bearer(token)])).status).toBe(200)
    expect((await c.call('/a', [bearer(token)], '?access_token=other')).status).toBe(400)
    expect((await c.call('/a', [bearer(token), bearer(token)])).status).toBe(400)
    expect((await c.call('/a', [['Authorization', 'Basic Zm9vOmJhcg==']])).status).toBe(401)
    expect((await c.call('/a', [])).status).toBe(401)
    expect((await c.call('/a', [bearer(token)])).status).toBe(200)
    expect(c.ports.size).toBe(1)
    c.close()
  })

  it('the remembered token is still checked against the route and its exp', async () => {
    const c = onOneConnection()
    const token = await sign(key, { iss: ISS, aud: 'api-b', scope: 'read' }, { expiresIn: 1 })
    const first = await c.call('/b', [bearer(token)])
    expect([first.status, await reason(first)]).toEqual([200, null])
    expect((await c.call('/b-admin', [bearer(token)])).status).toBe(403)
    const otherAudience = await c.call('/a', [bearer(token)])
    expect(otherAudience.status).toBe(401)
    expect(await reason(otherAudience)).toBe('audience_invalid')
    await new Promise((r) => setTimeout(r, 1200))
    const expired = await c.call('/b', [bearer(token)])
    expect(expired.status).toBe(401)
    expect(await reason(expired)).toBe('token_expired')
    expect(c.ports.size).toBe(1)
    c.close()
  })

  it('the remembered token is refused once its key is withdrawn', async () => {
    const c = onOneConnection()
    const token = await sign(key, { iss: ISS, aud: 'api-b', scope: 'read' })
    expect((await c.call('/b', [bearer(token)])).status).toBe(200)
    const other = await makeKey('ES256')
    jwks.keys = [other.publicJwk]
    await new Promise((r) => setTimeout(r, 150))
    await c.call('/b', [bearer(await sign(other, { iss: ISS, aud: 'api-b', scope: 'read' }))]) // the refresh happens
    await new Promise((r) => setTimeout(r, 50))
    const refused = await c.call('/b', [bearer(token)])
    expect(refused.status).toBe(401)
    expect(await reason(refused)).toBe('key_unknown')
    expect(c.ports.size).toBe(1)
    jwks.keys = [key.publicJwk]
    await new Promise((r) => setTimeout(r, 150))
    c.close()
  })
})
