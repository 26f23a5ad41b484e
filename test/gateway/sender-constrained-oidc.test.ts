import { createServer, type Server } from 'node:http'
import { createHash, randomBytes, X509Certificate } from 'node:crypto'
import { decodeJwt, exportJWK, generateKeyPair } from 'jose'
import Provider from 'oidc-provider'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { freePort } from '../helpers/redis.js'
import { TestCa, type Issued } from '../helpers/pki.js'
import { bearer, send } from '../helpers/servers.js'
import { dpopAuth, makeDpopKey, proof, type DpopKey } from '../helpers/dpop.js'

// Interop with a real authorization server: oidc-provider issues DPoP-bound
// tokens (its dPoP feature) and certificate-bound ones (its mTLS feature), as
// JWTs (resource indicators) and as opaque tokens (introspected, cnf in the
// answer). The gateway accepts each only with its binding: the proof of the
// same key, the same certificate (here passed by a trusted proxy in
// X-Forwarded-Client-Cert, as a mesh sidecar would).

const RESOURCE = 'https://api.example.com'
let issuer: string
let op: Server
let gw: TestGateway
let ca: TestCa
let cert: Issued
const APP = { id: 'app', secret: 'app-secret-0123456789-0123456789' }
const MTLS = { id: 'mtls-app', secret: 'mtls-secret-0123456789-012345678' }
const GATEWAY = { id: 'gateway', secret: 'gateway-secret-0123456789-012345' }
const basic = (c: { id: string; secret: string }) => `Basic ${Buffer.from(`${c.id}:${c.secret}`).toString('base64')}`
const xfcc = (pem: string) => `Hash=${createHash('sha256').update(new X509Certificate(pem).raw).digest('hex')};Cert="${encodeURIComponent(pem)}"`

beforeAll(async () => {
  ca = await TestCa.create('Client CA')
  cert = await ca.issue({ cn: 'mtls-app', client: true })
  const port = await freePort()
  issuer = `http://127.0.0.1:${port}`
  const { privateKey } = await generateKeyPair('ES256', { extractable: true })
  const client = (c: { id: string; secret: string }, extra: Record<string, unknown> = {}) => ({
    client_id: c.id,
    client_secret: c.secret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: 'orders:read',
    id_token_signed_response_alg: 'ES256',
    ...extra,
  })
  const provider = new Provider(issuer, {
    clients: [client(APP), client(MTLS, { tls_client_certificate_bound_access_tokens: true }), client(GATEWAY)],
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: 'op', alg: 'ES256', use: 'sig' }] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    scopes: ['orders:read'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      dPoP: { enabled: true },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        // The certificate as a TLS-terminating proxy in front of the provider would pass it.
        getCertificate: (ctx) => {
          const pem = ctx.get('x-client-cert')
          return pem ? decodeURIComponent(pem) : undefined
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({ scope: 'orders:read', audience: 'api', accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } }),
      },
    },
  } as ConstructorParameters<typeof Provider>[1])
  op = createServer(provider.callback())
  await new Promise<void>((resolve) => op.listen(port, '127.0.0.1', resolve))
  gw = await startGateway(`
server:
  trust_proxy: ["127.0.0.1"]
  client_certificate_header: { name: X-Forwarded-Client-Cert, format: xfcc }
upstreams: { api: { echo: true } }
issuers:
  - id: op
    issuer: ${issuer}
    jwks_uri: ${issuer}/jwks
    audiences: [api]
    algorithms: [ES256]
    validation: auto
    introspection:
      endpoint: ${issuer}/token/introspection
      client_id: ${GATEWAY.id}
      client_secret: ${GATEWAY.secret}
      require_audience: false
routes:
  - { id: orders, match: { path: /orders/* }, upstream: api, auth: { issuers: [op], scopes: { all_of: [orders:read] } } }
`)
})
afterAll(async () => {
  await gw?.close()
  await new Promise((r) => op?.close(r))
})

async function token(c: { id: string; secret: string }, options: { key?: DpopKey; resource?: boolean; cert?: string } = {}): Promise<{ access_token: string; token_type: string }> {
  const headers: Record<string, string> = { authorization: basic(c), 'content-type': 'application/x-www-form-urlencoded' }
  if (options.key) headers.dpop = proof(options.key, { htm: 'POST', htu: `${issuer}/token` })
  if (options.cert) headers['x-client-cert'] = encodeURIComponent(options.cert)
  const res = await fetch(`${issuer}/token`, { method: 'POST', headers, body: `grant_type=client_credentials&scope=orders:read${options.resource ? `&resource=${encodeURIComponent(RESOURCE)}` : ''}` })
  expect(res.status).toBe(200)
  return (await res.json()) as { access_token: string; token_type: string }
}

const withProof = (t: string, key: DpopKey): Array<[string, string]> => [dpopAuth(t), ['DPoP', proof(key, { htm: 'GET', htu: `${gw.url}/orders/1`, token: t })]]

describe('oidc-provider DPoP-bound tokens', () => {
  for (const kind of ['JWT', 'opaque'] as const) {
    it(`a ${kind} token is accepted with a proof of its key, refused as Bearer or with another key`, async () => {
      const key = makeDpopKey('ES256')
      const t = await token(APP, { key, resource: kind === 'JWT' })
      expect(t.token_type).toBe('DPoP')
      if (kind === 'JWT') expect(decodeJwt(t.access_token).cnf).toEqual({ jkt: key.jkt })
      else expect(t.access_token.split('.')).toHaveLength(1)
      expect((await send(gw.url, { path: '/orders/1', headers: withProof(t.access_token, key) })).status).toBe(200)
      expect((await send(gw.url, { path: '/orders/1', headers: [bearer(t.access_token)] })).status).toBe(401)
      expect((await send(gw.url, { path: '/orders/1', headers: withProof(t.access_token, makeDpopKey('ES256')) })).status).toBe(401)
      // The cached result (JWT verified, introspection cached) keeps its binding.
      expect((await send(gw.url, { path: '/orders/1', headers: [bearer(t.access_token)] })).status).toBe(401)
      expect((await send(gw.url, { path: '/orders/1', headers: withProof(t.access_token, key) })).status).toBe(200)
    })
  }

  it('an unbound token from the same provider still works as Bearer', async () => {
    const t = await token(APP, { resource: true })
    expect(t.token_type).toBe('Bearer')
    expect((await send(gw.url, { path: '/orders/1', headers: [bearer(t.access_token)] })).status).toBe(200)
  })
})

describe('oidc-provider certificate-bound tokens', () => {
  for (const kind of ['JWT', 'opaque'] as const) {
    it(`a ${kind} token is accepted over its certificate only`, async () => {
      const t = await token(MTLS, { cert: cert.cert, resource: kind === 'JWT' })
      if (kind === 'JWT') expect(decodeJwt(t.access_token).cnf).toHaveProperty(['x5t#S256'])
      expect((await send(gw.url, { path: '/orders/1', headers: [bearer(t.access_token), ['X-Forwarded-Client-Cert', xfcc(cert.cert)]] })).status).toBe(200)
      expect((await send(gw.url, { path: '/orders/1', headers: [bearer(t.access_token)] })).status).toBe(401)
      const other = await ca.issue({ cn: 'other', client: true })
      expect((await send(gw.url, { path: '/orders/1', headers: [bearer(t.access_token), ['X-Forwarded-Client-Cert', xfcc(other.cert)]] })).status).toBe(401)
    })
  }
})
