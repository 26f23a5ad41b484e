import { createHmac, KeyObject, sign as cryptoSign, verify } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeKey, sign, signRawRs256, b64url } from '../helpers/keys.js'
import { startFixture, standardConfig, AUDIENCE, ISSUER, type Fixture } from '../helpers/fixture.js'
import { bearer, send, type RawResponse } from '../helpers/servers.js'

// RFC 8725 attacks and claim checks, each through a real gateway, JWKS server and upstream.

const STRICT_ISSUER = 'https://strict.test.example'
let f: Fixture
beforeAll(async () => {
  f = await startFixture((jwks, upstream) =>
    standardConfig(
      jwks,
      upstream,
      `
  - id: strict
    match: { path: /strict/* }
    upstream: orders
    auth: { issuers: [strict], scopes: none }
`,
    ).replace(
      'routes:',
      `  - id: strict
    issuer: ${STRICT_ISSUER}
    jwks_uri: ${jwks}
    audiences: [${AUDIENCE}]
    require_typ: at+jwt
routes:`,
    ),
  )
})
afterAll(() => f.close())

async function expectRejected(res: RawResponse, reason: string, status = 401): Promise<void> {
  expect(res.status).toBe(status)
  const log = await f.gw.requestLog(res.headers['x-request-id'])
  expect(log.reason).toBe(reason)
  expect(log.decision).toBe('deny')
  if (status === 401) {
    expect(res.headers['www-authenticate']).toMatch(/^Bearer realm="gateway", error="invalid_token", error_description="[^"]+"$/)
    expect(res.json()).toMatchObject({ error: 'invalid_token' })
  }
}

async function call(token: string, path = '/orders/1'): Promise<RawResponse> {
  const before = f.upstream.received.length
  const res = await send(f.gw.url, { path, headers: [bearer(token)] })
  if (res.status !== 200) expect(f.upstream.received.length).toBe(before)
  return res
}

function forge(header: Record<string, unknown>, payload: Record<string, unknown>, signature = ''): string {
  return `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}.${signature}`
}

function claims(extra: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000)
  return { iss: ISSUER, aud: AUDIENCE, sub: 'u', scope: 'orders:read admin', iat: now, exp: now + 300, ...extra }
}

describe('signature and algorithm attacks', () => {
  it('refuses alg "none"', async () => {
    await expectRejected(await call(forge({ alg: 'none', typ: 'JWT' }, claims())), 'algorithm_not_allowed')
    await expectRejected(await call(forge({ alg: 'NONE' }, claims()) ), 'algorithm_not_allowed')
  })

  it('refuses HS256 signed with the RSA public key as the HMAC secret', async () => {
    const key = f.keys.RS256
    const header = { alg: 'HS256', kid: key.kid, typ: 'at+jwt' }
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims()))}`
    for (const secret of [JSON.stringify(key.publicJwk), key.publicJwk.n!]) {
      const mac = createHmac('sha256', secret).update(input).digest('base64url')
      await expectRejected(await call(`${input}.${mac}`), 'algorithm_not_allowed')
    }
  })

  it('refuses a tampered payload', async () => {
    const token = await f.token({ scope: 'orders:read' })
    const [h, , s] = token.split('.')
    const tampered = `${h}.${b64url(JSON.stringify(claims({ scope: 'orders:read admin' })))}.${s}`
    await expectRejected(await call(tampered, '/admin/x'), 'signature_invalid')
  })

  it('refuses a token signed by another key that claims a published kid', async () => {
    const attacker = await makeKey('RS256', f.keys.RS256.kid)
    await expectRejected(await call(await sign(attacker, claims())), 'signature_invalid')
  })

  it('ignores keys embedded in the header (jwk, jku, x5u)', async () => {
    const attacker = await makeKey('ES256')
    const token = await sign(attacker, claims(), {
      header: { jwk: attacker.publicJwk, jku: `${f.jwks.url}/attacker.json`, x5u: 'https://attacker.example/cert.pem' },
    })
    await expectRejected(await call(token), 'key_unknown')
  })

  it('refuses a kid that is a path or an injection', async () => {
    const attacker = await makeKey('RS256', '../../../../dev/null')
    await expectRejected(await call(await sign(attacker, claims())), 'key_unknown')
  })

  it('refuses an algorithm outside the issuer allow-list even with a valid signature', async () => {
    const ps = await makeKey('PS256')
    f.jwks.keys = [...f.jwks.keys, ps.publicJwk]
    const token = await sign(ps, claims())
    await expectRejected(await call(token), 'algorithm_not_allowed')
  })

  it('refuses unknown critical header parameters', async () => {
    const key = f.keys.RS256
    const token = signRawRs256(key, { alg: 'RS256', kid: key.kid, crit: ['exp-extension'], 'exp-extension': 1 }, claims())
    await expectRejected(await call(token), 'token_malformed')
  })

  // The signature is checked by node:crypto, on the exact segments sent; jose checks all the rest.
  it('refuses an ES256 signature in DER form, or of any length but 64 bytes, even when it verifies as DER', async () => {
    const key = f.keys.ES256
    const input = `${b64url(JSON.stringify({ alg: 'ES256', kid: key.kid, typ: 'at+jwt' }))}.${b64url(JSON.stringify(claims()))}`
    const der = cryptoSign('sha256', Buffer.from(input), KeyObject.from(key.privateKey))
    expect(verify('sha256', Buffer.from(input), KeyObject.from(key.privateKey), der)).toBe(true)
    await expectRejected(await call(`${input}.${der.toString('base64url')}`), 'signature_invalid')
    const p1363 = cryptoSign('sha256', Buffer.from(input), { key: KeyObject.from(key.privateKey), dsaEncoding: 'ieee-p1363' })
    expect((await call(`${input}.${p1363.toString('base64url')}`)).status).toBe(200)
    await expectRejected(await call(`${input}.${Buffer.concat([p1363, Buffer.from([0])]).toString('base64url')}`), 'signature_invalid')
  })

  it('refuses a payload or header re-encoded (padding, other characters) from what was signed', async () => {
    const token = await f.token({ scope: 'orders:read' })
    const [h, p, s] = token.split('.') as [string, string, string]
    const padded = Buffer.from(p, 'base64url').toString('base64') // standard alphabet, with padding
    for (const forged of [`${h}.${p}=.${s}`, `${h}.${padded}.${s}`, `${h}=.${p}.${s}`, `${h}.${p}.${s}=`, `${h}.${p}.${s}A`]) {
      // 400 where the Authorization header itself is not RFC 6750 syntax; never the upstream (call() checks).
      expect([400, 401]).toContain((await call(forged)).status)
    }
  })

  it('refuses a signature by a published key of another type than the alg says (ES256 header, RSA kid)', async () => {
    const rsa = f.keys.RS256
    const input = `${b64url(JSON.stringify({ alg: 'ES256', kid: rsa.kid, typ: 'at+jwt' }))}.${b64url(JSON.stringify(claims()))}`
    const signature = cryptoSign('sha256', Buffer.from(input), KeyObject.from(rsa.privateKey))
    const res = await call(`${input}.${signature.toString('base64url')}`)
    expect(res.status).toBe(401)
  })

  it('refuses what is not a JWT', async () => {
    await expectRejected(await call('not-a-jwt'), 'token_malformed')
    await expectRejected(await call('a.b.c'), 'token_malformed')
    await expectRejected(await call(forge({ alg: 'RS256' }, claims()).slice(0, -1) + 'x.y'), 'token_malformed')
  })
})

describe('claims', () => {
  it('refuses an expired token, beyond the clock skew', async () => {
    await expectRejected(await call(await f.token({}, { expiresIn: -60 })), 'token_expired')
  })

  it('accepts a token expired by less than the clock skew', async () => {
    expect((await call(await f.token({}, { expiresIn: -2 }))).status).toBe(200)
  })

  it('refuses a token without exp', async () => {
    const token = await sign(f.keys.RS256, { ...claims(), exp: undefined })
    await expectRejected(await call(token), 'claims_invalid')
  })

  it('refuses a token whose nbf is in the future', async () => {
    await expectRejected(await call(await f.token({ nbf: Math.floor(Date.now() / 1000) + 120 })), 'token_not_yet_valid')
  })

  it('refuses a wrong or missing iss', async () => {
    await expectRejected(await call(await f.token({ iss: 'https://evil.example' })), 'issuer_untrusted')
    await expectRejected(await call(await f.token({ iss: `${ISSUER}/` })), 'issuer_untrusted')
    await expectRejected(await call(await f.token({ iss: undefined })), 'issuer_untrusted')
  })

  it('refuses a token of a known issuer that this route does not trust', async () => {
    const token = await sign(f.keys.RS256, claims({ iss: STRICT_ISSUER }))
    await expectRejected(await call(token), 'issuer_untrusted')
  })

  it('refuses a wrong, array-without-match, empty or missing aud', async () => {
    await expectRejected(await call(await f.token({ aud: 'billing-api' })), 'audience_invalid')
    await expectRejected(await call(await f.token({ aud: ['billing-api', 'ORDERS-API'] })), 'audience_invalid')
    await expectRejected(await call(await f.token({ aud: [] })), 'audience_invalid')
    await expectRejected(await call(await f.token({ aud: '' })), 'audience_invalid')
    await expectRejected(await call(await f.token({ aud: undefined })), 'audience_invalid')
  })

  it('requires typ at+jwt where the issuer says so (RFC 9068)', async () => {
    const good = await sign(f.keys.EdDSA, claims({ iss: STRICT_ISSUER }))
    expect((await call(good, '/strict/x')).status).toBe(200)
    const application = await sign(f.keys.EdDSA, claims({ iss: STRICT_ISSUER }), { header: { typ: 'application/at+jwt' } })
    expect((await call(application, '/strict/x')).status).toBe(200)
    const idToken = await sign(f.keys.EdDSA, claims({ iss: STRICT_ISSUER }), { header: { typ: 'JWT' } })
    await expectRejected(await call(idToken, '/strict/x'), 'type_invalid')
  })

  it('refuses scope claims of the wrong type', async () => {
    await expectRejected(await call(await f.token({ scope: ['orders:read'] })), 'claims_invalid')
    await expectRejected(await call(await f.token({ scope: undefined, scp: [1, 2] })), 'claims_invalid')
  })

  it('refuses identity claims that cannot travel in a header', async () => {
    await expectRejected(await call(await f.token({ sub: 'a\r\nX-Client-Id: admin' })), 'claims_invalid')
    await expectRejected(await call(await f.token({ client_id: { id: 1 } })), 'claims_invalid')
  })

  it('treats a scope substring as no scope', async () => {
    const res = await call(await f.token({ scope: 'orders:reader orders' }))
    await expectRejected(res, 'scope_insufficient', 403)
  })
})

describe('responses never echo the token', () => {
  it('does not include the token in any error', async () => {
    const token = await f.token({ aud: 'billing-api' })
    const res = await call(token)
    expect(res.body).not.toContain(token)
    expect(JSON.stringify(res.headers)).not.toContain(token)
    expect(JSON.stringify(f.gw.logs)).not.toContain(token)
  })
})
