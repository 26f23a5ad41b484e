import { connect } from 'node:http2'
import * as grpc from '@grpc/grpc-js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { startServer, LISTEN_ANY, type Running } from '../helpers/running.js'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

// gRPC through the gateway: a real grpc-js client to the h2c listener, a real
// grpc-js server behind it (h2c upstream). Allowed calls get the identity as
// metadata and their trailers back; refused ones are gRPC-shaped
// (UNAUTHENTICATED 16, PERMISSION_DENIED 7, with the challenge); a call's
// grpc-timeout bounds the wait for the upstream.

const ISS = 'https://grpc.test.example'
const identity = (b: Buffer) => b
const SERVICE = {
  say: { path: '/demo.Echo/Say', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
  collect: { path: '/demo.Echo/Collect', requestStream: true, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
  stream: { path: '/demo.Echo/Stream', requestStream: false, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
  slow: { path: '/demo.Echo/Slow', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
} as const
let key: TestKey
let server: grpc.Server
let g: Running
let client: grpc.Client & Record<'say' | 'slow', (req: Buffer, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Buffer) => void) => grpc.ClientUnaryCall> & {
  stream(req: Buffer, md: grpc.Metadata): grpc.ClientReadableStream<Buffer>
  collect(md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res?: Buffer) => void): grpc.ClientWritableStream<Buffer>
}
const seenCancelled: boolean[] = []

beforeAll(async () => {
  key = await makeKey('ES256')
  server = new grpc.Server()
  server.addService(SERVICE as unknown as grpc.ServiceDefinition, {
    say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const md = new grpc.Metadata()
      md.set('x-trailer', 'from-the-service')
      cb(null, Buffer.from(JSON.stringify({ got: call.request.toString(), client: call.metadata.get('x-client-id')[0], auth: call.metadata.get('authorization')[0] ?? null })), md)
    },
    collect: (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const parts: string[] = []
      call.on('data', (m: Buffer) => parts.push(m.toString()))
      call.on('end', () => cb(null, Buffer.from(parts.join('+'))))
    },
    stream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      const who = String(call.metadata.get('x-client-id')[0])
      for (let i = 0; i < 3; i++) call.write(Buffer.from(`${who}:${i}`))
      const md = new grpc.Metadata()
      md.set('x-count', '3')
      call.end(md)
    },
    slow: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const timer = setTimeout(() => cb(null, Buffer.from('late')), 3000)
      call.on('cancelled', () => {
        clearTimeout(timer)
        seenCancelled.push(true)
      })
    },
  })
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))))
  const dir = await mkdtemp(join(tmpdir(), 'gw-grpc-'))
  await writeFile(join(dir, 'issuer.json'), JSON.stringify(key.publicJwk))
  g = await startServer(`${LISTEN_ANY.replace('drain_timeout: 2s }', 'drain_timeout: 2s, http2: { tls: false, cleartext_listen: "127.0.0.1:0" } }')}
issuers:
  - { id: corp, issuer: "${ISS}", keys: [{ file: ${dir}/issuer.json }], audiences: [api] }
upstreams:
  echo: { url: "http://127.0.0.1:${port}", http2: true, timeout: 10s }
routes:
  - { id: echo, match: { path: "/demo.Echo/*", methods: [POST] }, upstream: echo, auth: { issuers: [corp], scopes: { all_of: [echo] } } }
`)
  const Client = grpc.makeGenericClientConstructor(SERVICE as unknown as grpc.ServiceDefinition, 'Echo')
  client = new Client(g.h2cUrl!.replace('http://', ''), grpc.credentials.createInsecure()) as unknown as typeof client
})
afterAll(async () => {
  client?.close()
  await g?.drain()
  server?.forceShutdown()
})

const token = (scope = 'echo') => sign(key, { iss: ISS, aud: 'api', sub: 'svc', client_id: 'orders', scope })
let tokenSync = ''
beforeAll(async () => {
  tokenSync = await token()
})
const metadata = (t?: string) => {
  const md = new grpc.Metadata()
  if (t) md.set('authorization', `Bearer ${t}`)
  return md
}
function call(method: 'say' | 'slow', md: grpc.Metadata, deadlineMs?: number) {
  return new Promise<{ err: grpc.ServiceError | null; res?: Buffer; trailers?: grpc.Metadata }>((resolve) => {
    let trailers: grpc.Metadata | undefined
    const c = client[method](Buffer.from('hi'), md, deadlineMs ? { deadline: Date.now() + deadlineMs } : {}, (err, res) => setImmediate(() => resolve({ err, res, trailers })))
    c.on('status', (s: grpc.StatusObject) => (trailers = s.metadata))
  })
}

describe('gRPC', () => {
  it('an allowed call reaches the service with the identity, and its trailers come back', async () => {
    const { err, res, trailers } = await call('say', metadata(await token()))
    expect(err).toBeNull()
    expect(JSON.parse(res!.toString())).toEqual({ got: 'hi', client: 'orders', auth: null })
    expect(trailers!.get('x-trailer')).toEqual(['from-the-service'])
  })

  it('a call without a token is UNAUTHENTICATED (16), with the challenge; without the scope PERMISSION_DENIED (7)', async () => {
    const none = await call('say', metadata())
    expect(none.err!.code).toBe(grpc.status.UNAUTHENTICATED)
    expect(none.err!.details).toContain('no bearer token')
    expect(none.err!.metadata.get('www-authenticate')[0]).toMatch(/^Bearer /)
    const scoped = await call('say', metadata(await token('other')))
    expect(scoped.err!.code).toBe(grpc.status.PERMISSION_DENIED)
  })

  it('a server-streaming call: every message as it comes, then the status and trailers; refused without a token', async () => {
    const read = (md: grpc.Metadata) =>
      new Promise<{ messages: string[]; status: grpc.StatusObject }>((resolve) => {
        const messages: string[] = []
        const call = client.stream(Buffer.from('go'), md)
        call.on('data', (m: Buffer) => messages.push(m.toString()))
        call.on('error', () => undefined)
        call.on('status', (status: grpc.StatusObject) => resolve({ messages, status }))
      })
    const ok = await read(metadata(await token()))
    expect(ok.messages).toEqual(['orders:0', 'orders:1', 'orders:2'])
    expect(ok.status.code).toBe(grpc.status.OK)
    expect(ok.status.metadata.get('x-count')).toEqual(['3'])
    const refused = await read(metadata())
    expect(refused.messages).toEqual([])
    expect(refused.status.code).toBe(grpc.status.UNAUTHENTICATED)
  })

  it('a client-streaming call: the messages go up as they are sent, the answer comes back', async () => {
    const t = await token()
    const answer = await new Promise<string>((resolve, reject) => {
      const call = client.collect(metadata(t), (err, res) => (err ? reject(err) : resolve(res!.toString())))
      for (const part of ['a', 'b', 'c']) call.write(Buffer.from(part))
      call.end()
    })
    expect(answer).toBe('a+b+c')
  })

  it('the gateway answers a call past its grpc-timeout with DEADLINE_EXCEEDED, and cancels it upstream', async () => {
    const t = await token()
    const session = connect(g.h2cUrl!)
    try {
      const started = Date.now()
      const head = await new Promise<Record<string, unknown>>((resolve, reject) => {
        const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, 2]), Buffer.from('hi')])
        const stream = session.request({ ':method': 'POST', ':path': '/demo.Echo/Slow', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '300m', authorization: `Bearer ${t}` })
        let headers: Record<string, unknown> = {}
        stream.on('response', (h) => (headers = { ...h }))
        stream.on('trailers', (tr) => (headers = { ...headers, ...tr }))
        stream.on('end', () => resolve(headers))
        stream.on('error', reject)
        stream.resume()
        stream.end(frame)
      })
      expect(Date.now() - started).toBeLessThan(2500)
      expect(head['grpc-status']).toBe('4')
      await new Promise((r) => setTimeout(r, 200))
      expect(seenCancelled.length).toBeGreaterThan(0)
    } finally {
      session.close()
    }
  })
})

describe('gRPC to an upstream over TLS (h2 by ALPN)', () => {
  it('verifies the service against its CA and relays the call and its trailers', async () => {
    const { TestCa } = await import('../helpers/pki.js')
    const ca = await TestCa.create('gRPC CA')
    const leaf = await ca.issue({ cn: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'] })
    const secure = new grpc.Server()
    secure.addService(SERVICE as unknown as grpc.ServiceDefinition, {
      say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(`tls:${call.request.toString()}:${String(call.metadata.get('x-client-id')[0])}`)),
      collect: () => undefined,
      stream: () => undefined,
      slow: () => undefined,
    })
    const port = await new Promise<number>((resolve, reject) =>
      secure.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(leaf.cert), private_key: Buffer.from(leaf.key) }]), (err, p) => (err ? reject(err) : resolve(p))),
    )
    const dir = await mkdtemp(join(tmpdir(), 'gw-grpc-tls-'))
    await writeFile(join(dir, 'ca.pem'), ca.pem)
    await writeFile(join(dir, 'other-ca.pem'), (await TestCa.create('Another CA')).pem)
    await writeFile(join(dir, 'issuer.json'), JSON.stringify(key.publicJwk))
    const other = await startServer(`${LISTEN_ANY.replace('drain_timeout: 2s }', 'drain_timeout: 2s, http2: { tls: false, cleartext_listen: "127.0.0.1:0" } }')}
issuers:
  - { id: corp, issuer: "${ISS}", keys: [{ file: ${dir}/issuer.json }], audiences: [api] }
upstreams:
  echo: { url: "https://localhost:${port}", http2: true, tls: { ca: ${dir}/ca.pem } }
  untrusted: { url: "https://localhost:${port}", http2: true, tls: { ca: ${dir}/other-ca.pem } }
routes:
  - { id: echo, match: { path: "/demo.Echo/*", methods: [POST] }, upstream: echo, auth: { issuers: [corp], scopes: { all_of: [echo] } } }
  - { id: untrusted, match: { path: "/demo.Echo/*", methods: [POST], host: untrusted.example }, upstream: untrusted, auth: { issuers: [corp], scopes: { all_of: [echo] } } }
`)
    const Client = grpc.makeGenericClientConstructor(SERVICE as unknown as grpc.ServiceDefinition, 'Echo')
    const c = new Client(other.h2cUrl!.replace('http://', ''), grpc.credentials.createInsecure()) as unknown as typeof client
    try {
      const res = await new Promise<string>((resolve, reject) => c.say(Buffer.from('hi'), metadata(tokenSync), {}, (err, r) => (err ? reject(err) : resolve(r!.toString()))))
      expect(res).toBe('tls:hi:orders')
      // The same service behind a CA the gateway was not given: never called, UNAVAILABLE.
      const bad = new Client(other.h2cUrl!.replace('http://', ''), grpc.credentials.createInsecure(), { 'grpc.default_authority': 'untrusted.example' }) as unknown as typeof client
      const err = await new Promise<grpc.ServiceError | null>((resolve) => bad.say(Buffer.from('hi'), metadata(tokenSync), {}, (e) => resolve(e)))
      bad.close()
      expect(err?.code).toBe(grpc.status.UNAVAILABLE)
    } finally {
      c.close()
      await other.drain()
      secure.forceShutdown()
    }
  })
})
