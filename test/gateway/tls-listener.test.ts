import { createHash, X509Certificate } from 'node:crypto'
import { mkdir, rename, symlink, writeFile } from 'node:fs/promises'
import { Agent, request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import { connect, type TLSSocket } from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { TestCa, type Issued } from '../helpers/pki.js'
import { startServer, type Running } from '../helpers/running.js'
import { send, startEchoUpstream, type Echoed, type Listening } from '../helpers/servers.js'

// The HTTPS listener: TLS 1.2+ with ALPN http/1.1, a certificate rotated on
// disk by a Kubernetes-style symlink swap served to new handshakes while an
// open connection goes on; client certificates (request, require,
// self-signed) and certificate-bound tokens (RFC 8705) over them.

const ISS = 'https://mtls.test.example'
let ca: TestCa
let clientCa: TestCa
let serverCert: Issued
let clientCert: Issued
let otherClient: Issued
let key: TestKey
let upstream: Listening & { received: Echoed[] }
let issuerFile: string

const x5t = (pem: string) => createHash('sha256').update(new X509Certificate(pem).raw).digest('base64url')

interface Answer {
  status: number
  body: string
  socket: TLSSocket
  /** The serial number of the certificate the server presented. */
  serial: string | undefined
}

/** An HTTPS request trusting `ca`, optionally with a client certificate. */
function get(url: string, path: string, headers: Record<string, string>, options: { cert?: Issued; agent?: Agent; ca?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const u = new URL(url)
    const req = httpsRequest(
      { host: u.hostname, port: u.port, path, headers, ca: options.ca ?? ca.pem, servername: 'localhost', cert: options.cert?.cert, key: options.cert?.key, agent: options.agent ?? false },
      (res) => {
        const socket = res.socket as TLSSocket
        const serial = socket.getPeerX509Certificate()?.serialNumber
        let body = ''
        res.on('data', (c: Buffer) => (body += c.toString()))
        res.on('end', () => resolve({ status: res.statusCode!, body, socket, serial }))
      },
    )
    req.on('error', reject)
    req.end()
  })
}

function config(tls: string, extra = ''): string {
  return `
server:
  listen: false
  drain_timeout: 2s
  tls:
    listen: "127.0.0.1:0"
${tls}
admin: { listen: "127.0.0.1:0" }
issuers:
  - id: corp
    issuer: ${ISS}
    keys: [{ file: "${issuerFile}" }]
    audiences: [api]
upstreams:
  api: { url: "${upstream.url}" }
routes:
  - id: api
    match: { path: /api/* }
    upstream: api
    auth: { issuers: [corp], scopes: none }
  - id: mtls-only
    match: { path: /mtls/* }
    upstream: api
    auth: { issuers: [corp], scopes: none, binding: mtls }
${extra}`
}

async function start(tls: string, files: Record<string, string>): Promise<Running> {
  const { mkdtemp } = await import('node:fs/promises')
  const { tmpdir } = await import('node:os')
  const dir = await mkdtemp(join(tmpdir(), 'gw-tls-'))
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content)
  const yaml = config(tls.replaceAll('DIR/', `${dir}/`))
  return startServer(yaml)
}

beforeAll(async () => {
  ca = await TestCa.create('Server CA')
  clientCa = await TestCa.create('Client CA')
  serverCert = await ca.issue({ cn: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'] })
  clientCert = await clientCa.issue({ cn: 'orders-service', client: true, dns: ['orders.internal'] })
  otherClient = await clientCa.issue({ cn: 'other-service', client: true })
  key = await makeKey('ES256')
  const { mkdtemp } = await import('node:fs/promises')
  const { tmpdir } = await import('node:os')
  issuerFile = join(await mkdtemp(join(tmpdir(), 'gw-issuer-')), 'issuer.json')
  await writeFile(issuerFile, JSON.stringify(key.publicJwk))
  upstream = await startEchoUpstream()
})
afterAll(() => upstream.close())

describe('the HTTPS listener', () => {
  let g: Running
  beforeAll(async () => {
    g = await start('    cert: DIR/tls.crt\n    key: DIR/tls.key\n', { 'tls.crt': serverCert.cert, 'tls.key': serverCert.key })
  })
  afterAll(() => g.drain())

  it('serves over TLS with ALPN http/1.1 and says https to the upstream', async () => {
    expect(g.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
    const token = await sign(key, { iss: ISS, aud: 'api', sub: 'alice' })
    const res = await get(g.url, '/api/x', { authorization: `Bearer ${token}` })
    expect(res.status).toBe(200)
    expect(upstream.received.at(-1)!.headers['x-forwarded-proto']).toBe('https')
    const alpn = await new Promise<string | false>((resolve, reject) => {
      const u = new URL(g.url)
      const s = connect({ host: u.hostname, port: Number(u.port), ca: ca.pem, servername: 'localhost', ALPNProtocols: ['h2', 'http/1.1'] }, () => {
        resolve(s.alpnProtocol ?? false)
        s.destroy()
      })
      s.on('error', reject)
    })
    expect(alpn).toBe('http/1.1')
  })

  it('refuses TLS 1.1 and plain HTTP on the TLS port', async () => {
    const u = new URL(g.url)
    await expect(
      new Promise((resolve, reject) => {
        const s = connect({ host: u.hostname, port: Number(u.port), ca: ca.pem, servername: 'localhost', minVersion: 'TLSv1', maxVersion: 'TLSv1.1' }, () => resolve(s.getProtocol()))
        s.on('error', reject)
      }),
    ).rejects.toThrow()
    await expect(send(g.url.replace('https:', 'http:'), { path: '/api/x' })).rejects.toThrow()
  })
})

describe('certificate rotation on disk (a Secret volume symlink swap)', () => {
  it('new handshakes get the new certificate; an open connection goes on', async () => {
    const { mkdtemp } = await import('node:fs/promises')
    const { tmpdir } = await import('node:os')
    const dir = await mkdtemp(join(tmpdir(), 'gw-secret-'))
    await mkdir(join(dir, '..2026_12_01'))
    await writeFile(join(dir, '..2026_12_01', 'tls.crt'), serverCert.cert)
    await writeFile(join(dir, '..2026_12_01', 'tls.key'), serverCert.key)
    await symlink('..2026_12_01', join(dir, '..data'))
    await symlink('..data/tls.crt', join(dir, 'tls.crt'))
    await symlink('..data/tls.key', join(dir, 'tls.key'))
    const g = await startServer(config(`    cert: ${dir}/tls.crt\n    key: ${dir}/tls.key\n`))
    try {
      const token = await sign(key, { iss: ISS, aud: 'api', sub: 'alice' })
      const agent = new Agent({ keepAlive: true, maxSockets: 1 })
      const first = await get(g.url, '/api/x', { authorization: `Bearer ${token}` }, { agent })
      expect(first.serial).toBe(new X509Certificate(serverCert.cert).serialNumber)

      // cert-manager writes the renewed pair into a new directory and swaps ..data.
      const renewed = await ca.issue({ cn: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'] })
      await mkdir(join(dir, '..2026_12_02'))
      await writeFile(join(dir, '..2026_12_02', 'tls.crt'), renewed.cert)
      await writeFile(join(dir, '..2026_12_02', 'tls.key'), renewed.key)
      await symlink('..2026_12_02', join(dir, '..data_tmp'))
      await rename(join(dir, '..data_tmp'), join(dir, '..data'))
      expect(await g.reloader.reload('watch')).toBe('applied')

      const again = await get(g.url, '/api/x', { authorization: `Bearer ${token}` }, { agent })
      expect(again.status).toBe(200)
      expect(again.socket).toBe(first.socket) // the same connection, not dropped
      const fresh = await get(g.url, '/api/x', { authorization: `Bearer ${token}` })
      expect(fresh.status).toBe(200)
      expect(fresh.serial).toBe(new X509Certificate(renewed.cert).serialNumber)
      agent.destroy()
    } finally {
      await g.drain()
    }
  })
})

describe('certificate-bound tokens (RFC 8705) over the listener', () => {
  let g: Running
  let bound: string
  let unbound: string
  beforeAll(async () => {
    g = await start('    cert: DIR/tls.crt\n    key: DIR/tls.key\n    client_certificates: { mode: request, ca: DIR/clients.pem }\n', {
      'tls.crt': serverCert.cert,
      'tls.key': serverCert.key,
      'clients.pem': clientCa.pem,
    })
    bound = await sign(key, { iss: ISS, aud: 'api', sub: 'orders', cnf: { 'x5t#S256': x5t(clientCert.cert) } })
    unbound = await sign(key, { iss: ISS, aud: 'api', sub: 'bob' })
  })
  afterAll(() => g.drain())

  const reason = async (_res: Answer) => {
    for (let i = 0; i < 100; i++) {
      const line = [...g.logs].reverse().find((l) => l.msg === 'request')
      if (line) return line.reason
      await new Promise((r) => setTimeout(r, 5))
    }
    return undefined
  }

  it('a bound token over its certificate is forwarded', async () => {
    expect((await get(g.url, '/api/x', { authorization: `Bearer ${bound}` }, { cert: clientCert })).status).toBe(200)
    expect((await get(g.url, '/mtls/x', { authorization: `Bearer ${bound}` }, { cert: clientCert })).status).toBe(200)
  })

  it('a bound token without a certificate, or over another one, is refused; nothing forwarded', async () => {
    const before = upstream.received.length
    const none = await get(g.url, '/api/x', { authorization: `Bearer ${bound}` })
    expect(none.status).toBe(401)
    expect(await reason(none)).toBe('token_binding_missing')
    const wrong = await get(g.url, '/api/x', { authorization: `Bearer ${bound}` }, { cert: otherClient })
    expect(wrong.status).toBe(401)
    expect(JSON.parse(wrong.body).error).toBe('invalid_token')
    expect(upstream.received.length).toBe(before)
  })

  it('a certificate from another CA does not count (its token is refused), even when the client holds its key', async () => {
    const stranger = await (await TestCa.create('Stranger')).issue({ cn: 'orders-service', client: true })
    const token = await sign(key, { iss: ISS, aud: 'api', sub: 'x', cnf: { 'x5t#S256': x5t(stranger.cert) } })
    expect((await get(g.url, '/api/x', { authorization: `Bearer ${token}` }, { cert: stranger })).status).toBe(401)
  })

  it('binding: mtls refuses unbound tokens; optional routes take them, certificate or not', async () => {
    expect((await get(g.url, '/mtls/x', { authorization: `Bearer ${unbound}` }, { cert: clientCert })).status).toBe(401)
    expect((await get(g.url, '/api/x', { authorization: `Bearer ${unbound}` }, { cert: clientCert })).status).toBe(200)
    expect((await get(g.url, '/api/x', { authorization: `Bearer ${unbound}` })).status).toBe(200)
  })

  it('a client certificate header sent over the listener by a client is ignored and not forwarded', async () => {
    const res = await get(g.url, '/api/x', { authorization: `Bearer ${bound}`, 'x-forwarded-client-cert': `Hash=${createHash('sha256').update(new X509Certificate(clientCert.cert).raw).digest('hex')}`, 'client-cert': ':AAAA:' })
    expect(res.status).toBe(401)
    await get(g.url, '/api/x', { authorization: `Bearer ${unbound}`, 'x-forwarded-client-cert': 'Hash=00', 'client-cert': ':AAAA:', 'ssl-client-cert': 'x', 'x-ssl-client-cert': 'x' })
    const seen = upstream.received.at(-1)!.headers
    for (const h of ['x-forwarded-client-cert', 'client-cert', 'ssl-client-cert', 'x-ssl-client-cert']) expect(seen[h], h).toBeUndefined()
  })
})

describe('client certificates required, and self-signed ones', () => {
  it('require: a handshake without a certificate from the CA fails', async () => {
    const g = await start('    cert: DIR/tls.crt\n    key: DIR/tls.key\n    client_certificates: { mode: require, ca: DIR/clients.pem }\n', {
      'tls.crt': serverCert.cert,
      'tls.key': serverCert.key,
      'clients.pem': clientCa.pem,
    })
    try {
      const token = await sign(key, { iss: ISS, aud: 'api', sub: 'bob' })
      await expect(get(g.url, '/api/x', { authorization: `Bearer ${token}` })).rejects.toThrow()
      expect((await get(g.url, '/api/x', { authorization: `Bearer ${token}` }, { cert: clientCert })).status).toBe(200)
    } finally {
      await g.drain()
    }
  })

  it('request without a CA: a self-signed certificate binds (RFC 8705 §2.2)', async () => {
    const self = await (await TestCa.create('self')).issue({ cn: 'self-signed-client', client: true })
    const g = await start('    cert: DIR/tls.crt\n    key: DIR/tls.key\n    client_certificates: { mode: request }\n', { 'tls.crt': serverCert.cert, 'tls.key': serverCert.key })
    try {
      const token = await sign(key, { iss: ISS, aud: 'api', sub: 'x', cnf: { 'x5t#S256': x5t(self.cert) } })
      expect((await get(g.url, '/api/x', { authorization: `Bearer ${token}` }, { cert: self })).status).toBe(200)
      expect((await get(g.url, '/api/x', { authorization: `Bearer ${token}` }, { cert: clientCert })).status).toBe(401)
    } finally {
      await g.drain()
    }
  })
})
