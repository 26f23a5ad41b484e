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

// Requests no conforming client would send, written frame by frame (HPACK
// literals without Huffman): each is refused (a stream or connection error,
// or 400) and never reaches the upstream as HTTP/1.1.
describe('HTTP/2 requests that must not cross into HTTP/1.1', () => {
  const int = (value: number, prefixBits: number, first = 0) => {
    const max = (1 << prefixBits) - 1
    if (value < max) return [first | value]
    const out = [first | max]
    value -= max
    while (value >= 128) {
      out.push((value % 128) + 128)
      value = Math.floor(value / 128)
    }
    out.push(value)
    return out
  }
  const literal = (name: string, value: string) => Buffer.concat([Buffer.from([0x00]), Buffer.from(int(name.length, 7)), Buffer.from(name, 'latin1'), Buffer.from(int(Buffer.byteLength(value, 'latin1'), 7)), Buffer.from(value, 'latin1')])
  const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
    const head = Buffer.alloc(9)
    head.writeUIntBE(payload.length, 0, 3)
    head[3] = type
    head[4] = flags
    head.writeUInt32BE(stream, 5)
    return Buffer.concat([head, payload])
  }

  /** Sends one request as raw frames; what came back on its stream (status, or the error that ended it). */
  async function raw(headers: Array<[string, string]>, body?: string): Promise<string> {
    const { connect: tcp } = await import('node:net')
    const u = new URL(g.h2cUrl!)
    return new Promise((resolve) => {
      const socket = tcp(Number(u.port), u.hostname)
      let got = Buffer.alloc(0)
      const done = (what: string) => {
        socket.destroy()
        resolve(what)
      }
      socket.on('connect', () => {
        const block = Buffer.concat(headers.map(([n, v]) => literal(n, v)))
        socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0, Buffer.alloc(0)), frame(1, body === undefined ? 0x5 : 0x4, 1, block), ...(body === undefined ? [] : [frame(0, 0x1, 1, Buffer.from(body))])]))
      })
      socket.on('data', (chunk: Buffer) => {
        got = Buffer.concat([got, chunk])
        while (got.length >= 9) {
          const len = got.readUIntBE(0, 3)
          if (got.length < 9 + len) return
          const type = got[3]!
          const stream = got.readUInt32BE(5) & 0x7fffffff
          const payload = got.subarray(9, 9 + len)
          got = got.subarray(9 + len)
          if (type === 3 && stream === 1) return done(`reset ${payload.readUInt32BE(0)}`)
          if (type === 7) return done(`goaway ${payload.readUInt32BE(4)}`)
          if (type === 1 && stream === 1) return done(payload[0] === 0x88 ? 'status 200' : `headers ${payload.toString('hex').slice(0, 8)}`)
        }
      })
      socket.on('error', () => done('error'))
      socket.on('close', () => done('closed'))
      setTimeout(() => done('timeout'), 2000)
    })
  }

  // With a valid token: each of these would reach the upstream if the gateway let it through.
  let t = ''
  beforeAll(async () => {
    t = await token()
  })
  const base = (): Array<[string, string]> => [[':method', 'POST'], [':scheme', 'http'], [':authority', 'localhost'], [':path', '/api/x'], ['authorization', `Bearer ${t}`]]

  it('a well-formed raw request with the token reaches the upstream (the harness works)', async () => {
    const before = upstream.received.length
    expect(await raw([[':method', 'GET'], [':scheme', 'http'], [':authority', 'localhost'], [':path', '/api/x'], ['authorization', `Bearer ${t}`]])).toBe('status 200')
    expect(upstream.received.length).toBe(before + 1)
  })

  const hostile: Array<[string, () => Array<[string, string]>, string | undefined]> = [
    ['transfer-encoding: chunked (an h2 → h1 downgrade smuggle)', () => [...base(), ['transfer-encoding', 'chunked']], '0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['a connection header', () => [...base(), ['connection', 'keep-alive']], undefined],
    ['an upper-case header name', () => [...base(), ['X-Client-Id', 'admin']], undefined],
    ['two :path pseudo-headers', () => [...base(), [':path', '/other']], undefined],
    ['a pseudo-header after a regular one', () => [[':method', 'GET'], ['authorization', `Bearer ${t}`], [':path', '/api/x'], [':scheme', 'http'], [':authority', 'localhost']], undefined],
    ['an unknown pseudo-header', () => [...base(), [':protocol', 'websocket']], undefined],
    ['no :path', () => [[':method', 'GET'], [':scheme', 'http'], [':authority', 'localhost'], ['authorization', `Bearer ${t}`]], undefined],
    [':path not starting with /', () => [[':method', 'GET'], [':scheme', 'http'], [':authority', 'localhost'], [':path', 'http://evil.example/api/x'], ['authorization', `Bearer ${t}`]], undefined],
  ]
  // Field values HTTP forbids: nghttp2 drops such a field before the gateway sees the request, or the gateway
  // refuses it (normalize/host.ts); either way no CR, LF or NUL reaches an HTTP/1.1 upstream.
  const badValues: Array<[string, () => Array<[string, string]>, undefined]> = [
    ['CRLF in a header value', () => [...base(), ['x-note', 'a\r\nx-client-id: admin']], undefined],
    ['a NUL in a header value', () => [...base(), ['x-note', 'a\u0000b']], undefined],
    ['a lone LF in a header value', () => [...base(), ['x-note', 'a\nx-client-id: admin']], undefined],
    ['white space around a header value', () => [...base(), ['x-note', ' padded ']], undefined],
  ]
  for (const [name, build] of badValues) {
    it(`${name}: never reaches the upstream as sent`, async () => {
      const before = upstream.received.length
      const answer = await raw(build())
      expect(answer).not.toBe('timeout')
      if (answer === 'status 200') {
        expect(upstream.received.length).toBe(before + 1)
        const seen = upstream.received.at(-1)!.headers
        expect(seen['x-note']).toBeUndefined()
        expect(seen['x-client-id']).toBe('app')
      } else {
        expect(upstream.received.length).toBe(before)
      }
    })
  }

  for (const [name, build, body] of hostile) {
    it(`refuses ${name}; nothing reaches the upstream`, async () => {
      const before = upstream.received.length
      const answer = await raw(build(), body)
      expect(answer, answer).not.toBe('status 200')
      expect(answer).not.toBe('timeout')
      expect(upstream.received.length).toBe(before)
    })
  }
})

describe('HTTP/2 field values, checked by the gateway too', () => {
  it('refuses CR, LF, NUL and white space at either end in any value (whatever nghttp2 lets through)', async () => {
    const { refuseMalformedH2Fields } = await import('../../src/pipeline/normalize/host.js')
    for (const value of ['a\r\nb', 'a\nb', 'a\rb', 'a\u0000b', ' a', 'a\t']) expect(() => refuseMalformedH2Fields(2, ['x-a', value]), JSON.stringify(value)).toThrow()
    expect(() => refuseMalformedH2Fields(2, ['x-a', 'a b', 'x-b', ''])).not.toThrow()
    expect(() => refuseMalformedH2Fields(1, ['x-a', ' a'])).not.toThrow()
  })
})

describe('h2c on the plain listener (http2.cleartext)', () => {
  it('the same port serves HTTP/1.1 and HTTP/2 with prior knowledge, the client address kept for both', async () => {
    const p = await startServer(`
server: { listen: "127.0.0.1:0", drain_timeout: 2s, http2: { tls: false, cleartext: true } }
admin: { listen: "127.0.0.1:0" }
limits: { header_timeout: 500ms }
issuers:
  - { id: corp, issuer: "${ISS}", jwks_uri: "https://unused.example/jwks", audiences: [api] }
upstreams:
  api: { url: "${upstream.url}" }
routes:
  - { id: open, match: { path: /open/* }, upstream: api, auth: public }
`)
    try {
      const session = h2(p.url)
      const viaH2 = await request(session, { ':path': '/open/h2' })
      session.close()
      expect(viaH2.headers[':status']).toBe(200)
      const { send } = await import('../helpers/servers.js')
      const viaH1 = await send(p.url, { path: '/open/h1' })
      expect(viaH1.status).toBe(200)
      expect(upstream.received.slice(-2).map((r) => r.url)).toEqual(['/open/h2', '/open/h1'])
      const lines = p.logs.filter((l) => l.msg === 'request' && String(l.path).startsWith('/open/'))
      expect(lines.map((l) => l.ip)).toEqual(['127.0.0.1', '127.0.0.1'])
      expect(upstream.received.at(-2)!.headers['x-forwarded-for']).toBe('127.0.0.1')
      // A connection that sends nothing is not held while the gateway waits to see its protocol.
      const { connect: tcp } = await import('node:net')
      const u = new URL(p.url)
      const started = Date.now()
      await new Promise<void>((resolve) => tcp(Number(u.port), u.hostname).on('close', () => resolve()).on('error', () => undefined))
      expect(Date.now() - started).toBeLessThan(2000)
    } finally {
      await p.drain()
    }
  })
})
