import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashSecret } from '../../src/authorization-server/secret-hash.js'
import { startIntrospectionServer, type IntrospectionServer } from '../helpers/introspection-server.js'
import { makeKey, sign } from '../helpers/keys.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { freePort } from '../helpers/redis.js'
import { startServer, type Running } from '../helpers/running.js'
import { bearer, send } from '../helpers/servers.js'

// No token, Authorization value or client secret ever reaches the logs,
// whatever happens to the request, errors included.

const INTROSPECTION_SECRET = 'introspection-secret-XYZ-123'
const CLIENT_SECRET = 'client-secret-QWE-456789'
let gw: Running
let jwks: JwksServer
let as: IntrospectionServer
const secrets: string[] = [INTROSPECTION_SECRET, CLIENT_SECRET]

beforeAll(async () => {
  const key = await makeKey('ES256')
  jwks = await startJwksServer([key.publicJwk])
  as = await startIntrospectionServer({ id: 'gateway', secret: INTROSPECTION_SECRET })
  const port = await freePort()
  const self = `http://127.0.0.1:${port}`
  gw = await startServer(`
server: { listen: "127.0.0.1:${port}" }
admin: { listen: "127.0.0.1:0" }
authorization_server:
  issuer: ${self}
  clients:
    - { client_id: svc, secret_hash: "${await hashSecret(CLIENT_SECRET)}", scopes: [read], default_scopes: [read], audiences: [api] }
issuers:
  - id: corp
    issuer: https://corp.example
    jwks_uri: ${jwks.jwksUri}
    audiences: [api]
    introspection: { endpoint: "${as.endpoint}", client_id: gateway, client_secret: "\${INTROSPECTION_SECRET}", timeout: 300ms }
  - { id: self, issuer: "${self}", jwks_uri: "${self}/.well-known/jwks.json", audiences: [api] }
upstreams:
  dead: { url: "http://127.0.0.1:1" }
  echo: { echo: true }
routes:
  - { id: r, match: { path: /r/* }, upstream: echo, auth: { issuers: [corp, self], scopes: { all_of: [read] } } }
  - { id: d, match: { path: /dead }, upstream: dead, auth: { issuers: [corp], scopes: none } }
`, { INTROSPECTION_SECRET })
  const good = await sign(key, { iss: 'https://corp.example', aud: 'api', scope: 'read' })
  const expired = await sign(key, { iss: 'https://corp.example', aud: 'api', scope: 'read' }, { expiresIn: -600 })
  const wrongAud = await sign(key, { iss: 'https://corp.example', aud: 'other' })
  const forged = await sign(await makeKey('ES256', key.kid), { iss: 'https://corp.example', aud: 'api' })
  as.tokens.set('opaque-active-token-AAA', { active: true, aud: 'api', scope: 'read' })
  secrets.push(good, expired, wrongAud, forged, 'opaque-active-token-AAA', 'opaque-unknown-token-BBB', 'opaque-during-outage-CCC')

  const form: [string, string] = ['Content-Type', 'application/x-www-form-urlencoded']
  const basic = (s: string): [string, string] => ['Authorization', `Basic ${Buffer.from(`svc:${s}`).toString('base64')}`]
  const issued = await send(gw.url, { method: 'POST', path: '/oauth2/token', headers: [form, basic(CLIENT_SECRET)], body: 'grant_type=client_credentials' })
  const issuedToken = issued.json<{ access_token: string }>().access_token
  secrets.push(issuedToken, Buffer.from(`svc:${CLIENT_SECRET}`).toString('base64'))

  const requests = [
    send(gw.url, { path: '/r/1', headers: [bearer(good)] }),
    send(gw.url, { path: '/r/1', headers: [bearer(issuedToken)] }),
    send(gw.url, { path: '/r/1', headers: [bearer(expired)] }),
    send(gw.url, { path: '/r/1', headers: [bearer(wrongAud)] }),
    send(gw.url, { path: '/r/1', headers: [bearer(forged)] }),
    send(gw.url, { path: '/r/1', headers: [bearer(good), bearer(expired)] }),
    send(gw.url, { path: `/r/1?access_token=${good}` }),
    send(gw.url, { path: `/r/1?access_token=${good}`, headers: [bearer(good)] }),
    send(gw.url, { path: '/r/1', headers: [['Authorization', `Bearer ${good} trailing`]] }),
    send(gw.url, { path: '/r/1', headers: [bearer('opaque-active-token-AAA')] }),
    send(gw.url, { path: '/r/1', headers: [bearer('opaque-unknown-token-BBB')] }),
    send(gw.url, { path: '/dead', headers: [bearer(good)] }),
    send(gw.url, { method: 'POST', path: '/oauth2/token', headers: [form, basic('wrong-' + CLIENT_SECRET)], body: 'grant_type=client_credentials' }),
    send(gw.url, { method: 'POST', path: '/oauth2/token', headers: [form], body: `grant_type=client_credentials&client_id=svc&client_secret=${CLIENT_SECRET}&scope=admin` }),
    send(gw.url, { method: 'POST', path: '/oauth2/introspect', headers: [form, basic(CLIENT_SECRET)], body: `token=${issuedToken}` }),
  ]
  await Promise.all(requests)
  as.mode = 'error'
  await send(gw.url, { path: '/r/1', headers: [bearer('opaque-during-outage-CCC')] })
  as.mode = 'ok'
  await new Promise((r) => setTimeout(r, 100))
})
afterAll(async () => {
  await gw.drain()
  await jwks.close()
  await as.close()
})

describe('logs', () => {
  it('logged every request, with its decision and reason', () => {
    const lines = gw.logs.filter((l) => l.msg === 'request')
    expect(lines.length).toBeGreaterThanOrEqual(17)
    expect(lines.map((l) => l.reason)).toEqual(expect.arrayContaining(['token_expired', 'audience_invalid', 'signature_invalid', 'token_duplicated', 'dependency_unavailable', 'upstream_unavailable']))
    expect(gw.logs.some((l) => l.msg === 'request failed')).toBe(true)
  })

  it('never contain a token, an Authorization value or a client secret', () => {
    const all = gw.rawLog.join('')
    for (const secret of secrets) expect(all.includes(secret), `log contains ${secret.slice(0, 12)}…`).toBe(false)
    // Nor any part of a JWT signature or a Bearer header.
    expect(all).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.eyJ/)
    expect(all.toLowerCase()).not.toContain('bearer ')
    expect(all.toLowerCase()).not.toContain('basic ')
  })
})
