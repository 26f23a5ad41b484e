import { connect, constants, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { TestCa } from '../helpers/pki.js'
import { startServer, type Running } from '../helpers/running.js'
import { startEchoUpstream, type Echoed, type Listening } from '../helpers/servers.js'

// HTTP/2: h2 by ALPN on the HTTPS listener and h2c with prior knowledge on a
// listener of its own, through the same pipeline (tokens, scopes, identity
// headers, bodies) to HTTP/1.1 upstreams; pseudo-headers never become
// headers upstream; streams bounded, rapid resets end the connection.

const ISS = 'https://h2.test.example'
let key: TestKey
let ca: TestCa
let upstream: Listening & { received: Echoed[] }
let g: Running

beforeAll(async () => {
  key = await makeKey('ES256')
  ca = await TestCa.create('H2 CA')
  const leaf = await ca.issue({ cn: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'] })
  upstream = await startEchoUpstream()
  const dir = await mkdtemp(join(tmpdir(), 'gw-h2-'))
  for (const [name, text] of Object.entries({ 'tls.crt': leaf.cert, 'tls.key': leaf.key, 'issuer.json': JSON.stringify(key.publicJwk) })) await writeFile(join(dir, name), text)
  g = await startServer(`
server:
  listen: "127.0.0.1:0"
  drain_timeout: 2s
  tls: { listen: "127.0.0.1:0", cert: ${dir}/tls.crt, key: ${dir}/tls.key }
  http2: { cleartext_listen: "127.0.0.1:0", max_concurrent_streams: 10, max_resets_per_second: 20 }
admin: { listen: "127.0.0.1:0" }
issuers:
  - { id: corp, issuer: "${ISS}", keys: [{ file: ${dir}/issuer.json }], audiences: [api] }
upstreams:
  api: { url: "${upstream.url}" }
routes:
  - { id: api, match: { path: /api/* }, upstream: api, auth: { issuers: [corp], scopes: { all_of: [read] } } }
`)
})
afterAll(async () => {
  await g.drain()
  await upstream.close()
})

const token = () => sign(key, { iss: ISS, aud: 'api', sub: 'alice', client_id: 'app', scope: 'read' })

function h2(url: string): ClientHttp2Session {
  return connect(url, url.startsWith('https') ? { ca: ca.pem, servername: 'localhost' } : {})
}

function request(session: ClientHttp2Session, headers: Record<string, string>, body?: string): Promise<{ headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, body === undefined ? { endStream: true } : {})
    let text = ''
    let head: IncomingHttpHeaders = {}
    stream.on('response', (h) => (head = h))
    stream.on('data', (c: Buffer) => (text += c.toString()))
    stream.on('end', () => resolve({ headers: head, body: text }))
    stream.on('error', reject)
    if (body !== undefined) stream.end(body)
  })
}

describe('HTTP/2', () => {
  for (const kind of ['h2 (TLS, ALPN)', 'h2c (prior knowledge)'] as const) {
    it(`${kind}: the same checks, the identity headers, bodies forwarded, no pseudo-header upstream`, async () => {
      const session = h2(kind.startsWith('h2c') ? g.h2cUrl! : g.tlsUrl!)
      try {
        const refused = await request(session, { ':path': '/api/x' })
        expect(refused.headers[':status']).toBe(401)
        expect(refused.headers['www-authenticate']).toMatch(/^Bearer /)
        const t = await token()
        const ok = await request(session, { ':path': '/api/x?q=1', authorization: `Bearer ${t}`, 'x-client-id': 'spoofed' })
        expect(ok.headers[':status']).toBe(200)
        const seen = upstream.received.at(-1)!
        expect(seen.url).toBe('/api/x?q=1')
        expect(seen.headers['x-client-id']).toBe('app')
        expect(Object.keys(seen.headers).filter((h) => h.startsWith(':'))).toEqual([])
        expect(seen.headers['x-forwarded-proto']).toBe(kind.startsWith('h2c') ? 'http' : 'https')
        const posted = await request(session, { ':path': '/api/p', ':method': 'POST', authorization: `Bearer ${t}`, 'content-type': 'application/json' }, '{"a":1}')
        expect(posted.headers[':status']).toBe(200)
        expect(upstream.received.at(-1)!.body).toBe('{"a":1}')
        // Many streams on one connection.
        const many = await Promise.all(Array.from({ length: 30 }, () => request(session, { ':path': '/api/m', authorization: `Bearer ${t}` })))
        expect(many.every((r) => Number(r.headers[':status']) === 200)).toBe(true)
      } finally {
        session.close()
      }
    })
  }

  it('an :authority and a Host naming different hosts are refused (400)', async () => {
    const session = h2(g.h2cUrl!)
    try {
      const res = await request(session, { ':path': '/api/x', ':authority': 'api.example.com', host: 'admin.example.com', authorization: `Bearer ${await token()}` })
      expect(res.headers[':status']).toBe(400)
    } finally {
      session.close()
    }
  })

  it('announces its stream bound, and a client resetting streams faster than allowed loses the connection (rapid reset)', async () => {
    const session = h2(g.h2cUrl!)
    await new Promise((r) => session.once('remoteSettings', r))
    expect(session.remoteSettings.maxConcurrentStreams).toBe(10)
    const closed = new Promise<void>((resolve) => session.once('close', () => resolve()))
    session.on('error', () => undefined)
    for (let i = 0; i < 60 && !session.destroyed && !session.closed; i++) {
      const stream = session.request({ ':path': '/api/slow' })
      stream.on('error', () => undefined)
      stream.close(constants.NGHTTP2_CANCEL)
      await new Promise((r) => setImmediate(r))
    }
    await Promise.race([closed, new Promise((_, j) => setTimeout(() => j(new Error('still open')), 3000))])
  })
})
