import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { bearer, send, startEchoUpstream, type Echoed, type Listening } from '../helpers/servers.js'

// Step-up (RFC 9470): a token that does not show the required acr, or whose
// auth_time is missing, malformed, too old or in the future, is refused with
// 401 insufficient_user_authentication and the challenge naming what a new
// token must show; nothing is forwarded.

const ISS = 'https://idp.test.example'
let upstream: Listening & { received: Echoed[] }
let jwks: JwksServer
let key: TestKey
let g: TestGateway

beforeAll(async () => {
  upstream = await startEchoUpstream()
  key = await makeKey('RS256')
  jwks = await startJwksServer([key.publicJwk])
  g = await startGateway(`
upstreams: { api: { url: "${upstream.url}" } }
issuers:
  - { id: idp, issuer: ${ISS}, jwks_uri: ${jwks.jwksUri}, audiences: [api], clock_skew: 5s }
routes:
  - id: admin
    match: { path: /admin/* }
    upstream: api
    auth:
      issuers: [idp]
      scopes: { all_of: [admin] }
      step_up: { acr_values: ["urn:example:mfa", "urn:example:hwk"], max_age: 10m }
  - id: recent
    match: { path: /recent/* }
    upstream: api
    auth: { issuers: [idp], scopes: none, step_up: { max_age: 1m } }
  - id: plain
    match: { path: /plain/* }
    upstream: api
    auth: { issuers: [idp], scopes: none }
`)
})
afterAll(async () => {
  await g.close()
  await upstream.close()
  await jwks.close()
})

const now = () => Math.floor(Date.now() / 1000)
const token = (claims: Record<string, unknown>) => sign(key, { iss: ISS, aud: 'api', sub: 'u1', scope: 'admin', exp: now() + 600, ...claims })

async function challenged(path: string, t: string): Promise<string> {
  const before = upstream.received.length
  const res = await send(g.url, { path, headers: [bearer(t)] })
  expect(res.status, path).toBe(401)
  expect(res.json()).toMatchObject({ error: 'insufficient_user_authentication' })
  expect((await g.requestLog(res.headers['x-request-id'])).reason).toBe('authentication_insufficient')
  expect(upstream.received.length).toBe(before)
  return res.headers['www-authenticate'] as string
}

describe('step-up', () => {
  it('a token with an accepted acr and a recent auth_time passes (fresh and cached)', async () => {
    const t = await token({ acr: 'urn:example:mfa', auth_time: now() - 60 })
    for (let i = 0; i < 2; i++) expect((await send(g.url, { path: '/admin/1', headers: [bearer(t)] })).status).toBe(200)
    expect((await send(g.url, { path: '/admin/1', headers: [bearer(await token({ acr: 'urn:example:hwk', auth_time: now() }))] })).status).toBe(200)
  })

  it('the challenge names the acr values and max_age in seconds', async () => {
    const challenge = await challenged('/admin/1', await token({ acr: 'urn:example:pwd', auth_time: now() }))
    expect(challenge).toMatch(/^Bearer realm="gateway", error="insufficient_user_authentication", error_description="[^"]+", acr_values="urn:example:mfa urn:example:hwk", max_age=600$/)
    expect(await challenged('/recent/1', await token({ auth_time: now() - 120 }))).toMatch(/error="insufficient_user_authentication".*, max_age=60$/)
  })

  it('acr: any other value, spelling or type is refused', async () => {
    for (const acr of [undefined, null, '', 'URN:EXAMPLE:MFA', 'urn:example:mfa ', 'urn:example:mfa urn:example:hwk', ['urn:example:mfa'], { v: 'urn:example:mfa' }, 2]) {
      await challenged('/admin/1', await token({ acr, auth_time: now() }))
    }
  })

  it('auth_time: missing, malformed, too old or in the future is refused', async () => {
    for (const auth_time of [undefined, null, String(now()), now() - 601, now() + 60, [now()], 1e20]) {
      await challenged('/admin/1', await token({ acr: 'urn:example:mfa', auth_time }))
    }
    // Within the issuer's clock skew, a little in the future is fine.
    expect((await send(g.url, { path: '/admin/1', headers: [bearer(await token({ acr: 'urn:example:mfa', auth_time: now() + 2 }))] })).status).toBe(200)
  })

  it('routes without step-up are unaffected', async () => {
    expect((await send(g.url, { path: '/plain/1', headers: [bearer(await token({}))] })).status).toBe(200)
  })
})
