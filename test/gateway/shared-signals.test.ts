import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SignJWT } from 'jose'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { bearer, send } from '../helpers/servers.js'
import { CREDENTIAL_CHANGE, SESSION_REVOKED } from '../../src/pipeline/signals/ssf-receiver.js'

// Shared Signals (OpenID SSF, CAEP) by push delivery (RFC 8935): a
// transmitter written here signs Security Event Tokens with its own keys and
// POSTs them; session-revoked and credential-change deny the subject's
// earlier tokens at once; anything unverifiable is refused with an RFC 8935
// error and denies nothing.

const IDP = 'https://idp.test.example'
const TX = 'https://transmitter.test.example'
let idpKey: TestKey
let txKey: TestKey
let rogueKey: TestKey
let idpJwks: JwksServer
let txJwks: JwksServer
let g: TestGateway

beforeAll(async () => {
  idpKey = await makeKey('ES256')
  txKey = await makeKey('ES256')
  rogueKey = await makeKey('ES256')
  idpJwks = await startJwksServer([idpKey.publicJwk])
  txJwks = await startJwksServer([txKey.publicJwk])
  g = await startGateway(`
revocation:
  signals:
    transmitters: [{ issuer: ${TX}, jwks_uri: ${txJwks.jwksUri}, audience: https://gateway.test.example }]
upstreams: { api: { echo: true } }
issuers:
  - { id: idp, issuer: ${IDP}, jwks_uri: ${idpJwks.jwksUri}, audiences: [api] }
routes:
  - { id: api, match: { path: /api/* }, upstream: api, auth: { issuers: [idp], scopes: none } }
`)
})
afterAll(async () => {
  await g.close()
  await idpJwks.close()
  await txJwks.close()
})

const now = () => Math.floor(Date.now() / 1000)
const token = (sub: string, iat = now() - 10) => sign(idpKey, { iss: IDP, aud: 'api', sub, iat, exp: now() + 600 })
let n = 0
function set(events: Record<string, unknown>, options: { key?: TestKey; iss?: string; aud?: string; typ?: string; subId?: unknown } = {}): Promise<string> {
  const key = options.key ?? txKey
  return new SignJWT({ events, ...(options.subId ? { sub_id: options.subId } : {}) })
    .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: options.typ ?? 'secevent+jwt' })
    .setIssuer(options.iss ?? TX)
    .setAudience(options.aud ?? 'https://gateway.test.example')
    .setIssuedAt()
    .setJti(`set-${++n}`)
    .sign(key.privateKey)
}
const push = (body: string, type = 'application/secevent+jwt') => send(g.url, { method: 'POST', path: '/ssf/events', headers: [['Content-Type', type]], body })
const subject = (sub: string, iss = IDP) => ({ format: 'iss_sub', iss, sub })

describe('Shared Signals receiver', () => {
  for (const [name, eventType] of [['session-revoked', SESSION_REVOKED], ['credential-change', CREDENTIAL_CHANGE]] as const) {
    it(`${name}: the subject's earlier tokens are refused at once, later ones and other subjects pass`, async () => {
      const sub = `user-${name}`
      const old = await token(sub)
      expect((await send(g.url, { path: '/api/1', headers: [bearer(old)] })).status).toBe(200)
      const res = await push(await set({ [eventType]: { event_timestamp: now() - 1, ...(name === 'credential-change' ? { credential_type: 'password', change_type: 'update' } : {}) } }, { subId: subject(sub) }))
      expect(res.status).toBe(202)
      expect((await send(g.url, { path: '/api/1', headers: [bearer(old)] })).status).toBe(401)
      expect((await send(g.url, { path: '/api/1', headers: [bearer(await token(sub, now() + 1))] })).status).toBe(200)
      expect((await send(g.url, { path: '/api/1', headers: [bearer(await token('someone-else'))] })).status).toBe(200)
    })
  }

  it('the older CAEP form (the subject inside the event) is understood too', async () => {
    const old = await token('carol')
    expect((await push(await set({ [SESSION_REVOKED]: { subject: subject('carol'), event_timestamp: now() } }))).status).toBe(202)
    expect((await send(g.url, { path: '/api/1', headers: [bearer(old)] })).status).toBe(401)
  })

  it('refuses what it cannot verify, with the RFC 8935 error, and denies nothing', async () => {
    const victim = await token('dave')
    const events = { [SESSION_REVOKED]: { event_timestamp: now() } }
    const cases: Array<[string, Promise<string> | string, string, string?]> = [
      ['signed by another key', set(events, { key: rogueKey, subId: subject('dave') }), 'invalid_key'],
      ['from an unknown transmitter', set(events, { iss: 'https://evil.example', subId: subject('dave') }), 'invalid_issuer'],
      ['for another receiver', set(events, { aud: 'https://other.example', subId: subject('dave') }), 'invalid_audience'],
      ['not typed as a SET', set(events, { typ: 'JWT', subId: subject('dave') }), 'invalid_key'],
      ['as the wrong media type', set(events, { subId: subject('dave') }), 'invalid_request', 'application/json'],
      ['not a JWT', 'garbage', 'invalid_request'],
    ]
    for (const [what, body, err, type] of cases) {
      const res = await push(await body, type)
      expect(res.status, what).toBe(400)
      expect(res.json(), what).toMatchObject({ err })
    }
    // Subjects of issuers the gateway does not trust, and other subject formats, are ignored.
    expect((await push(await set(events, { subId: subject('dave', 'https://untrusted.example') }))).status).toBe(202)
    expect((await push(await set(events, { subId: { format: 'email', email: 'dave@x.example' } }))).status).toBe(202)
    expect((await send(g.url, { path: '/api/1', headers: [bearer(victim)] })).status).toBe(200)
  })
})
