import { createHash, X509Certificate } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { TestCa, type Issued } from '../helpers/pki.js'
import { bearer, send, startEchoUpstream, type Echoed, type Listening } from '../helpers/servers.js'
import { parseSubjectAltNames } from '../../src/oauth/client-certificate.js'

// Behind a TLS-terminating proxy the client certificate arrives in a header
// (Envoy's X-Forwarded-Client-Cert, URL-encoded PEM, RFC 9440 Client-Cert).
// It is believed only from trusted proxy addresses; from anyone else it is
// ignored (a certificate-bound token then has no certificate) and never
// forwarded. Names with control bytes refuse the certificate.

const ISS = 'https://xfcc.test.example'
let upstream: Listening & { received: Echoed[] }
let key: TestKey
let ca: TestCa
let client: Issued
let bound: string

const der = (pem: string) => new X509Certificate(pem).raw
const x5t = (pem: string) => createHash('sha256').update(der(pem)).digest('base64url')
const hex = (pem: string) => createHash('sha256').update(der(pem)).digest('hex')
const xfcc = (pem: string, extra = '') => `By=spiffe://cluster.local/ns/default/sa/gateway;Hash=${hex(pem)};Cert="${encodeURIComponent(pem)}";Subject="CN=x"${extra}`

const config = (trust: string, header: string, format: string) => `
server:
  trust_proxy: [${trust}]
  client_certificate_header: { name: ${header}, format: ${format} }
issuers:
  - id: corp
    issuer: ${ISS}
    keys: [{ file: issuer.json }]
    audiences: [api]
upstreams:
  api: { url: "${upstream.url}" }
routes:
  - id: api
    match: { path: /api/* }
    upstream: api
    auth: { issuers: [corp], scopes: none }
`

beforeAll(async () => {
  upstream = await startEchoUpstream()
  key = await makeKey('ES256')
  ca = await TestCa.create('Mesh CA')
  client = await ca.issue({ cn: 'orders', client: true, dns: ['orders.internal'] })
  bound = await sign(key, { iss: ISS, aud: 'api', sub: 'orders', cnf: { 'x5t#S256': x5t(client.cert) } })
})
afterAll(() => upstream.close())

const start = (trust: string, header: string, format: string) => startGateway(config(trust, header, format), { 'issuer.json': JSON.stringify(key.publicJwk) })

describe('from a trusted proxy', () => {
  let g: TestGateway
  beforeAll(async () => {
    g = await start('"127.0.0.1"', 'X-Forwarded-Client-Cert', 'xfcc')
  })
  afterAll(() => g.close())

  const call = (headers: Array<[string, string]>) => send(g.url, { path: '/api/x', headers: [bearer(bound), ...headers] })

  it('XFCC with the bound certificate (Cert, Hash or both) passes, and the header is not forwarded', async () => {
    for (const value of [xfcc(client.cert), `Hash=${hex(client.cert)}`, `Cert="${encodeURIComponent(client.cert)}"`]) {
      const res = await call([['X-Forwarded-Client-Cert', value]])
      expect(res.status, value.slice(0, 40)).toBe(200)
      expect(upstream.received.at(-1)!.headers['x-forwarded-client-cert']).toBeUndefined()
    }
  })

  it('another certificate, or none, refuses the bound token', async () => {
    const other = await ca.issue({ cn: 'other', client: true })
    expect((await call([['X-Forwarded-Client-Cert', xfcc(other.cert)]])).status).toBe(401)
    expect((await call([])).status).toBe(401)
  })

  it('malformed or ambiguous headers are 400 client_certificate_invalid', async () => {
    const other = await ca.issue({ cn: 'other', client: true })
    for (const value of [
      `${xfcc(client.cert)},${xfcc(other.cert)}`, // two elements
      `Hash=${hex(other.cert)};Cert="${encodeURIComponent(client.cert)}"`, // Hash of another Cert
      'Hash=zz',
      'Cert="%E0%A4%A"',
      'Cert="not a certificate"',
      'By=x',
      'Cert="unterminated',
    ]) {
      const res = await call([['X-Forwarded-Client-Cert', value]])
      expect(res.status, value.slice(0, 50)).toBe(400)
      expect((await g.requestLog(res.headers['x-request-id'])).reason).toBe('client_certificate_invalid')
    }
    const twice = await call([['X-Forwarded-Client-Cert', xfcc(client.cert)], ['x-forwarded-client-cert', xfcc(client.cert)]])
    expect(twice.status).toBe(400)
  })

  it('a certificate whose alternative names hold a NUL or another control byte is refused', async () => {
    for (const name of ['orders.internal\u0000.evil.example', 'orders\n.internal', 'a\u007f.example']) {
      const evil = await ca.issue({ cn: 'orders', client: true, dns: [name] })
      const token = await sign(key, { iss: ISS, aud: 'api', sub: 'x', cnf: { 'x5t#S256': x5t(evil.cert) } })
      const res = await send(g.url, { path: '/api/x', headers: [bearer(token), ['X-Forwarded-Client-Cert', xfcc(evil.cert)]] })
      expect(res.status, JSON.stringify(name)).toBe(400)
    }
  })
})

describe('other header formats', () => {
  it('URL-encoded PEM (nginx $ssl_client_escaped_cert, AWS ALB) and RFC 9440 Client-Cert', async () => {
    const pem = await start('"127.0.0.1"', 'X-Amzn-Mtls-Clientcert', 'pem')
    const sf = await start('"127.0.0.1"', 'Client-Cert', 'rfc9440')
    try {
      expect((await send(pem.url, { path: '/api/x', headers: [bearer(bound), ['X-Amzn-Mtls-Clientcert', encodeURIComponent(client.cert)]] })).status).toBe(200)
      expect((await send(sf.url, { path: '/api/x', headers: [bearer(bound), ['Client-Cert', `:${der(client.cert).toString('base64')}:`]] })).status).toBe(200)
      expect((await send(sf.url, { path: '/api/x', headers: [bearer(bound), ['Client-Cert', der(client.cert).toString('base64')]] })).status).toBe(400)
    } finally {
      await pem.close()
      await sf.close()
    }
  })
})

describe('from an untrusted peer', () => {
  it('the header is ignored (the bound token has no certificate) and not forwarded', async () => {
    const g = await start('"10.0.0.0/8"', 'X-Forwarded-Client-Cert', 'xfcc')
    try {
      const before = upstream.received.length
      const res = await send(g.url, { path: '/api/x', headers: [bearer(bound), ['X-Forwarded-Client-Cert', xfcc(client.cert)]] })
      expect(res.status).toBe(401)
      expect((await g.requestLog(res.headers['x-request-id'])).reason).toBe('token_binding_missing')
      expect(upstream.received.length).toBe(before)
      const unbound = await sign(key, { iss: ISS, aud: 'api', sub: 'y' })
      await send(g.url, { path: '/api/x', headers: [bearer(unbound), ['x-forwarded-client-cert', xfcc(client.cert)]] })
      expect(upstream.received.at(-1)!.headers['x-forwarded-client-cert']).toBeUndefined()
    } finally {
      await g.close()
    }
  })

  it('a client certificate header needs trusted proxies to be configured', async () => {
    await expect(startGateway(config('', 'X-Forwarded-Client-Cert', 'xfcc').replace('  trust_proxy: []\n', ''), { 'issuer.json': JSON.stringify(key.publicJwk) })).rejects.toThrow(/trust_proxy/)
  })
})

describe('subject alternative names as Node prints them', () => {
  it('reads plain and quoted names; refuses control bytes however written', () => {
    expect(parseSubjectAltNames('DNS:a.example, DNS:"b\\u002cc.example", IP Address:127.0.0.1')).toEqual(['DNS:a.example', 'DNS:b,c.example', 'IP Address:127.0.0.1'])
    expect(parseSubjectAltNames(undefined)).toEqual([])
    for (const bad of ['DNS:"a\\u0000b"', 'DNS:a\u0000b', 'DNS:"a\\nb"', 'DNS:"a\\u001fb", DNS:c', 'DNS:"unterminated', 'nocolon']) {
      expect(() => parseSubjectAltNames(bad), bad).toThrow()
    }
  })
})
