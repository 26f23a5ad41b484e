import { generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto'
import type { JWK } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { b64url, makeKey, sign, type TestKey } from '../helpers/keys.js'
import { bearer, send, startEchoUpstream, type Listening } from '../helpers/servers.js'

// A key set is data from a peer: an odd key in it is a counted refusal of
// the tokens it signed (401), never a 500, never an error line per request.

const ISS = 'https://odd-jwks.test.example'
let jwks: JwksServer
let upstream: Listening
let g: TestGateway
let good: TestKey

/** An RS256 key pair of any size, made with node:crypto (jose refuses to make weak ones). */
function rsaKey(bits: number, kid: string): { jwk: JWK; privateKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: bits })
  return { jwk: { ...(publicKey.export({ format: 'jwk' }) as JWK), kid, alg: 'RS256', use: 'sig' }, privateKey }
}

function signRs256(privateKey: KeyObject, kid: string, claims: Record<string, unknown> = {}): string {
  const now = Math.floor(Date.now() / 1000)
  const input = `${b64url(JSON.stringify({ alg: 'RS256', kid, typ: 'at+jwt' }))}.${b64url(JSON.stringify({ iss: ISS, aud: 'api', sub: 'u', scope: 'read', iat: now, exp: now + 300, ...claims }))}`
  return `${input}.${cryptoSign('sha256', Buffer.from(input), privateKey).toString('base64url')}`
}

const weak = rsaKey(1024, 'weak-1024')
const twinA = rsaKey(2048, 'twin')
const twinB = rsaKey(2048, 'twin')

beforeAll(async () => {
  good = await makeKey('ES256')
  // An EC key whose point is not on its curve.
  const offCurve: JWK = { ...good.publicJwk, kid: 'off-curve', y: b64url(Buffer.alloc(32, 1)) }
  jwks = await startJwksServer([good.publicJwk, weak.jwk, offCurve, twinA.jwk, twinB.jwk])
  upstream = await startEchoUpstream()
  g = await startGateway(`
upstreams: { api: { url: "${upstream.url}" } }
issuers:
  - { id: odd, issuer: "${ISS}", jwks_uri: "${jwks.jwksUri}", audiences: [api], algorithms: [RS256, ES256], jwks: { cooldown: 1s } }
routes:
  - { id: r, match: { path: /r }, upstream: api, auth: { issuers: [odd], scopes: { all_of: [read] } } }
`)
})
afterAll(async () => {
  await g.close()
  await upstream.close()
  await jwks.close()
})

const call = (token: string) => send(g.url, { path: '/r', headers: [bearer(token)] })
const rejected = (reason: string) => g.gateway.metrics.jwksKeysRejectedTotal.value(['odd', reason])

describe('odd keys in a JWKS', () => {
  it('a token signed with an RSA key under 2048 bits is 401 key_unusable, every time, counted once', async () => {
    const token = signRs256(weak.privateKey, 'weak-1024')
    for (let i = 0; i < 10; i++) {
      const res = await call(token)
      expect(res.status).toBe(401)
      expect(res.headers['www-authenticate']).toContain('error="invalid_token"')
      expect((await g.requestLog(res.headers['x-request-id'])).reason).toBe('key_unusable')
    }
    expect(rejected('too_weak')).toBe(1)
    expect(g.logs.filter((l) => l.msg === 'request failed')).toEqual([])
  })

  it('a token naming a key whose point is off its curve is 401, not 500', async () => {
    const token = await sign({ ...good, kid: 'off-curve' }, { iss: ISS, aud: 'api', scope: 'read' })
    const res = await call(token)
    expect(res.status).toBe(401)
    expect(rejected('unusable')).toBe(1)
  })

  it('good keys of the same set keep working', async () => {
    expect((await call(await sign(good, { iss: ISS, aud: 'api', scope: 'read' }))).status).toBe(200)
  })

  it('two keys under one kid: a token signed by either is accepted', async () => {
    expect((await call(signRs256(twinA.privateKey, 'twin'))).status).toBe(200)
    expect((await call(signRs256(twinB.privateKey, 'twin'))).status).toBe(200)
    const stranger = rsaKey(2048, 'twin')
    expect((await call(signRs256(stranger.privateKey, 'twin'))).status).toBe(401)
  })
})
