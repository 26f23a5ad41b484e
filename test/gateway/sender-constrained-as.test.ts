import { createHash, generateKeyPairSync, X509Certificate } from 'node:crypto'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeJwt } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashSecret } from '../../src/authorization-server/secret-hash.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { freePort } from '../helpers/redis.js'
import { TestCa, type Issued } from '../helpers/pki.js'
import { startServer, type Running } from '../helpers/running.js'
import { bearer, send, type RawResponse } from '../helpers/servers.js'
import { dpopAuth, makeDpopKey, proof } from '../helpers/dpop.js'

// The built-in authorization server issues sender-constrained tokens, so the
// whole flow runs with one command: DPoP-bound tokens (a proof at the token
// endpoint, RFC 9449 §5) and certificate-bound ones (a client certificate on
// the TLS listener, RFC 8705 §3). The gateway in front accepts each only
// with its binding.

const SECRET = 'orders-service-secret-0123'
const FORM: [string, string] = ['Content-Type', 'application/x-www-form-urlencoded']
const basic: [string, string] = ['Authorization', `Basic ${Buffer.from(`orders-service:${SECRET}`).toString('base64')}`]

const clients = (hash: string) => `
  clients:
    - client_id: orders-service
      secret_hash: "${hash}"
      scopes: [orders:read]
      default_scopes: [orders:read]
      audiences: [orders-api]
    - client_id: monitor
      secret_hash: "${hash}"
      scopes: []
      audiences: [orders-api]
      introspect: true`

describe('DPoP-bound tokens from the built-in authorization server', () => {
  let gw: TestGateway
  let issuer: string
  beforeAll(async () => {
    const port = await freePort()
    issuer = `http://127.0.0.1:${port}`
    gw = await startGateway(
      `
authorization_server:
  issuer: ${issuer}
${clients(await hashSecret(SECRET))}
issuers:
  - { id: local, issuer: "${issuer}", jwks_uri: "${issuer}/.well-known/jwks.json", audiences: [orders-api] }
protected_resource: { resource: "${issuer}/api" }
upstreams: { echo: { echo: true } }
routes:
  - id: orders
    match: { path: /api/orders/* }
    upstream: echo
    auth: { issuers: [local], scopes: { all_of: [orders:read] } }
`,
      {},
      { port },
    )
  })
  afterAll(() => gw.close())

  const tokenEndpoint = () => `${issuer}/oauth2/token`
  const tokenRequest = (headers: Array<[string, string]>) => send(gw.url, { method: 'POST', path: '/oauth2/token', headers: [FORM, basic, ...headers], body: 'grant_type=client_credentials' })

  it('a token request with a proof gets token_type DPoP and a token bound to the proof key (cnf.jkt)', async () => {
    const key = makeDpopKey('ES256')
    const res = await tokenRequest([['DPoP', proof(key, { htm: 'POST', htu: tokenEndpoint() })]])
    expect(res.status).toBe(200)
    const body = res.json<{ access_token: string; token_type: string }>()
    expect(body.token_type).toBe('DPoP')
    expect(decodeJwt(body.access_token).cnf).toEqual({ jkt: key.jkt })

    const url = `${issuer}/api/orders/1`
    const ok = await send(gw.url, { path: '/api/orders/1', headers: [dpopAuth(body.access_token), ['DPoP', proof(key, { htm: 'GET', htu: url, token: body.access_token })]] })
    expect(ok.status).toBe(200)
    expect(ok.json<{ headers: Record<string, string> }>().headers['x-client-id']).toBe('orders-service')
    // Stolen and used as a bearer token: refused.
    expect((await send(gw.url, { path: '/api/orders/1', headers: [bearer(body.access_token)] })).status).toBe(401)
    // Used with a proof by another key: refused.
    const thief = makeDpopKey('ES256')
    expect((await send(gw.url, { path: '/api/orders/1', headers: [dpopAuth(body.access_token), ['DPoP', proof(thief, { htm: 'GET', htu: url, token: body.access_token })]] })).status).toBe(401)
  })

  it('introspection says token_type DPoP and carries cnf', async () => {
    const key = makeDpopKey('EdDSA')
    const token = (await tokenRequest([['DPoP', proof(key, { htm: 'POST', htu: tokenEndpoint() })]])).json<{ access_token: string }>().access_token
    const monitor: [string, string] = ['Authorization', `Basic ${Buffer.from(`monitor:${SECRET}`).toString('base64')}`]
    const res = await send(gw.url, { method: 'POST', path: '/oauth2/introspect', headers: [FORM, monitor], body: `token=${token}` })
    expect(res.json()).toMatchObject({ active: true, token_type: 'DPoP', cnf: { jkt: key.jkt } })
  })

  it('a bad proof, a replayed one or one for another endpoint is 400 invalid_dpop_proof, and no token is issued', async () => {
    const key = makeDpopKey('ES256')
    const once = proof(key, { htm: 'POST', htu: tokenEndpoint() })
    expect((await tokenRequest([['DPoP', once]])).status).toBe(200)
    for (const bad of [once, proof(key, { htm: 'GET', htu: tokenEndpoint() }), proof(key, { htm: 'POST', htu: `${issuer}/oauth2/introspect` }), proof(key, { htm: 'POST', htu: tokenEndpoint(), tamper: true }), 'garbage']) {
      const res: RawResponse = await tokenRequest([['DPoP', bad]])
      expect(res.status).toBe(400)
      expect(res.json().error).toBe('invalid_dpop_proof')
    }
  })

  it('without a proof the token is a plain bearer token', async () => {
    const body = (await tokenRequest([])).json<{ access_token: string; token_type: string }>()
    expect(body.token_type).toBe('Bearer')
    expect(decodeJwt(body.access_token).cnf).toBeUndefined()
  })

  it('both metadata documents advertise DPoP', async () => {
    const as = (await send(gw.url, { path: '/.well-known/oauth-authorization-server' })).json()
    expect(as.dpop_signing_alg_values_supported).toContain('ES256')
    const pr = (await send(gw.url, { path: '/.well-known/oauth-protected-resource/api' })).json()
    expect(pr).toMatchObject({ dpop_bound_access_tokens_required: false, tls_client_certificate_bound_access_tokens: false })
    expect(pr.dpop_signing_alg_values_supported).toContain('EdDSA')
  })
})

describe('certificate-bound tokens from the built-in authorization server (RFC 8705)', () => {
  let g: Running
  let ca: TestCa
  let client: Issued
  beforeAll(async () => {
    ca = await TestCa.create('Server CA')
    const clientCa = await TestCa.create('Client CA')
    const server = await ca.issue({ cn: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'] })
    client = await clientCa.issue({ cn: 'orders-service', client: true })
    const dir = await mkdtemp(join(tmpdir(), 'gw-mtls-as-'))
    await writeFile(join(dir, 'tls.crt'), server.cert)
    await writeFile(join(dir, 'tls.key'), server.key)
    await writeFile(join(dir, 'clients.pem'), clientCa.pem)
    // The gateway verifies the server's tokens with its public key (it would not trust this test CA to fetch the JWKS).
    const signing = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    await writeFile(join(dir, 'as.pem'), signing.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string)
    await writeFile(join(dir, 'as-public.pem'), signing.publicKey.export({ type: 'spki', format: 'pem' }) as string)
    const port = await freePort()
    const issuer = `https://127.0.0.1:${port}`
    g = await startServer(`
server:
  listen: false
  tls: { listen: "127.0.0.1:${port}", cert: ${dir}/tls.crt, key: ${dir}/tls.key, client_certificates: { mode: request, ca: ${dir}/clients.pem } }
admin: { listen: "127.0.0.1:0" }
authorization_server:
  issuer: ${issuer}
  keys: [{ file: ${dir}/as.pem, kid: as-1 }]
${clients(await hashSecret(SECRET))}
issuers:
  - { id: local, issuer: "${issuer}", keys: [{ file: ${dir}/as-public.pem, kid: as-1 }], audiences: [orders-api] }
protected_resource: { resource: "${issuer}/api" }
upstreams: { echo: { echo: true } }
routes:
  - id: orders
    match: { path: /api/orders/* }
    upstream: echo
    auth: { issuers: [local], scopes: { all_of: [orders:read] }, binding: mtls }
`)
  })
  afterAll(() => g.drain())

  function https(path: string, headers: Record<string, string>, body?: string, cert?: Issued): Promise<{ status: number; body: string }> {
    const u = new URL(g.url)
    return new Promise((resolve, reject) => {
      const req = httpsRequest({ host: u.hostname, port: u.port, path, method: body ? 'POST' : 'GET', headers, ca: ca.pem, cert: cert?.cert, key: cert?.key, agent: false }, (res) => {
        let text = ''
        res.on('data', (c: Buffer) => (text += c))
        res.on('end', () => resolve({ status: res.statusCode!, body: text }))
      })
      req.on('error', reject)
      req.end(body)
    })
  }

  it('a token requested over a client certificate is bound to it, and works only over it', async () => {
    const res = await https('/oauth2/token', { 'content-type': 'application/x-www-form-urlencoded', authorization: basic[1] }, 'grant_type=client_credentials', client)
    expect(res.status).toBe(200)
    const token = (JSON.parse(res.body) as { access_token: string }).access_token
    expect((decodeJwt(token).cnf as Record<string, string>)['x5t#S256']).toBe(createHash('sha256').update(new X509Certificate(client.cert).raw).digest('base64url'))
    expect((await https('/api/orders/1', { authorization: `Bearer ${token}` }, undefined, client)).status).toBe(200)
    expect((await https('/api/orders/1', { authorization: `Bearer ${token}` })).status).toBe(401)
  })

  it('a token requested without a certificate is unbound, and the mtls route refuses it', async () => {
    const res = await https('/oauth2/token', { 'content-type': 'application/x-www-form-urlencoded', authorization: basic[1] }, 'grant_type=client_credentials')
    const token = (JSON.parse(res.body) as { access_token: string }).access_token
    expect(decodeJwt(token).cnf).toBeUndefined()
    expect((await https('/api/orders/1', { authorization: `Bearer ${token}` }, undefined, client)).status).toBe(401)
  })

  it('both metadata documents say certificate-bound tokens are supported', async () => {
    const pr = JSON.parse((await https('/.well-known/oauth-protected-resource/api', {})).body) as Record<string, unknown>
    expect(pr.tls_client_certificate_bound_access_tokens).toBe(true)
    const as = JSON.parse((await https('/.well-known/oauth-authorization-server', {})).body) as Record<string, unknown>
    expect(as.tls_client_certificate_bound_access_tokens).toBe(true)
  })
})
