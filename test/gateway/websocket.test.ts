import type { IncomingMessage } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket, { WebSocketServer } from 'ws'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'

// WebSocket routes: an upgrade is authenticated and authorized like any
// request, then tunnelled to a real WebSocket server with the identity
// headers; refused ones never reach it. Tunnels close (after a close
// handshake) when the token expires (1008), when idle, and on shutdown; the
// token may come as a subprotocol; Origin is checked against the route's CORS.

const ISS = 'https://ws.test.example'
let key: TestKey
let upstream: WebSocketServer
let upstreamUrl: string
const seen: Array<{ headers: IncomingMessage['headers']; protocol: string; closes: number[] }> = []
let g: TestGateway

beforeAll(async () => {
  key = await makeKey('ES256')
  upstream = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: (protocols) => (protocols.has('chat') ? 'chat' : false) })
  await new Promise((r) => upstream.once('listening', r))
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`
  upstream.on('connection', (socket, req) => {
    if (req.url?.includes('refuse')) return socket.terminate()
    const record = { headers: req.headers, protocol: socket.protocol, closes: [] as number[] }
    seen.push(record)
    socket.on('message', (data, binary) => socket.send(binary ? data : `echo:${data.toString()}`, { binary }))
    socket.on('close', (code) => record.closes.push(code))
  })
  g = await startGateway(`
issuers:
  - { id: corp, issuer: "${ISS}", keys: [{ file: issuer.json }], audiences: [api] }
upstreams:
  chat: { url: "${upstreamUrl}" }
routes:
  - id: live
    match: { path: /live/* }
    upstream: chat
    auth: { issuers: [corp], scopes: { all_of: [chat] } }
    websocket: { idle_timeout: 1s }
  - id: browser
    match: { path: /browser/* }
    upstream: chat
    auth: { issuers: [corp], scopes: { all_of: [chat] } }
    websocket: { subprotocol_token: true }
    cors: { allowed_origins: ["https://app.example"] }
  - id: plain
    match: { path: /plain/* }
    upstream: chat
    auth: { issuers: [corp], scopes: none }
`, { 'issuer.json': JSON.stringify(key.publicJwk) })
})
afterAll(async () => {
  await g.close()
  await new Promise((r) => upstream.close(r))
})

const wsUrl = (path: string) => g.url.replace('http:', 'ws:') + path
const token = (claims: Record<string, unknown> = {}, expiresIn = 300) => sign(key, { iss: ISS, aud: 'api', sub: 'alice', client_id: 'app', scope: 'chat', ...claims }, { expiresIn })

/** Opens a WebSocket; resolves once open, or with the refusal's status and headers. */
function open(url: string, options: WebSocket.ClientOptions & { protocols?: string[] } = {}): Promise<{ ws?: WebSocket; status?: number; headers?: IncomingMessage['headers'] }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options.protocols ?? [], options)
    ws.once('open', () => resolve({ ws }))
    ws.once('unexpected-response', (_req, res) => resolve({ status: res.statusCode, headers: res.headers }))
    ws.once('error', reject)
  })
}

const closed = (ws: WebSocket) => new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })))

describe('WebSocket routes', () => {
  it('the echo responder accepts WebSockets itself: first what a service would receive, then echoes', async () => {
    const e = await startGateway(`
issuers:
  - { id: corp, issuer: "${ISS}", keys: [{ file: issuer.json }], audiences: [api] }
upstreams: { echo: { echo: true } }
routes:
  - { id: echo, match: { path: /echo/* }, upstream: echo, auth: { issuers: [corp], scopes: none }, websocket: true }
`, { 'issuer.json': JSON.stringify(key.publicJwk) })
    try {
      const ws = new WebSocket(e.url.replace('http:', 'ws:') + '/echo/x?a=1', { headers: { authorization: `Bearer ${await token()}` } })
      const messages: string[] = []
      ws.on('message', (m) => messages.push(m.toString()))
      await new Promise((r) => ws.once('open', r))
      ws.send('hello')
      ws.send(Buffer.alloc(100_000, 1))
      await new Promise((r) => setTimeout(r, 200))
      const greeting = JSON.parse(messages[0]!) as { path: string; query: string; headers: Record<string, string> }
      expect(greeting).toMatchObject({ path: '/echo/x', query: 'a=1' })
      expect(greeting.headers['x-client-id']).toBe('app')
      expect(greeting.headers.authorization).toBeUndefined()
      expect(messages[1]).toBe('hello')
      expect(messages[2]!.length).toBe(100_000)
      ws.close(1000)
      expect((await closed(ws)).code).toBe(1000)
    } finally {
      await e.close()
    }
  })

  it('an allowed upgrade is tunnelled with the identity headers; messages go both ways', async () => {
    const before = seen.length
    const { ws } = await open(wsUrl('/live/room'), { headers: { authorization: `Bearer ${await token()}`, 'x-client-id': 'spoofed' } })
    const reply = new Promise<string>((r) => ws!.once('message', (d) => r(d.toString())))
    ws!.send('hello')
    expect(await reply).toBe('echo:hello')
    const binary = new Promise<Buffer>((r) => ws!.once('message', (d) => r(d as Buffer)))
    ws!.send(Buffer.alloc(70_000, 7))
    expect((await binary).length).toBe(70_000)
    const up = seen[before]!
    expect(up.headers['x-client-id']).toBe('app')
    expect(up.headers['x-subject']).toBe('alice')
    expect(up.headers.authorization).toBeUndefined()
    ws!.close(1000)
    expect((await closed(ws!)).code).toBe(1000)
  })

  it('a refused upgrade never reaches the upstream: 401 without a token, 403 without the scope', async () => {
    const before = seen.length
    const none = await open(wsUrl('/live/room'))
    expect(none.status).toBe(401)
    expect(none.headers!['www-authenticate']).toMatch(/^Bearer /)
    const scoped = await open(wsUrl('/live/room'), { headers: { authorization: `Bearer ${await token({ scope: 'other' })}` } })
    expect(scoped.status).toBe(403)
    expect(seen.length).toBe(before)
  })

  it('a route without websocket refuses the upgrade (501); so is any other upgrade', async () => {
    const res = await open(wsUrl('/plain/x'), { headers: { authorization: `Bearer ${await token()}` } })
    expect(res.status).toBe(501)
  })

  it('closes the tunnel with 1008 after a close handshake when the token expires; the upstream gets it too', async () => {
    const before = seen.length
    const { ws } = await open(wsUrl('/browser/room'), { protocols: ['chat', `base64url.bearer.authorization.k8s.io.${Buffer.from(await token({}, 2)).toString('base64url')}`], headers: { origin: 'https://app.example' } })
    const keepAlive = setInterval(() => ws!.send('ping'), 200)
    const end = await closed(ws!)
    clearInterval(keepAlive)
    expect(end).toEqual({ code: 1008, reason: 'token expired' })
    await new Promise((r) => setTimeout(r, 200))
    expect(seen[before]!.closes).toContain(1008)
  }, 10_000)

  it('the subprotocol token is taken out before forwarding; the other subprotocols are negotiated', async () => {
    const before = seen.length
    const t = await token()
    const { ws } = await open(wsUrl('/browser/room'), { protocols: ['chat', `base64url.bearer.authorization.k8s.io.${Buffer.from(t).toString('base64url')}`], headers: { origin: 'https://app.example' } })
    expect(ws!.protocol).toBe('chat')
    expect(seen[before]!.headers['sec-websocket-protocol']).toBe('chat')
    expect(JSON.stringify(seen[before]!.headers)).not.toContain(Buffer.from(t).toString('base64url'))
    ws!.close()
    // The token in the header and as a subprotocol at once: refused.
    const both = await open(wsUrl('/browser/room'), { protocols: [`base64url.bearer.authorization.k8s.io.${Buffer.from(t).toString('base64url')}`], headers: { origin: 'https://app.example', authorization: `Bearer ${t}` } })
    expect(both.status).toBe(400)
  })

  it('Origin is checked against the route\'s CORS origins (cross-site WebSocket hijacking)', async () => {
    const t = Buffer.from(await token()).toString('base64url')
    const evil = await open(wsUrl('/browser/room'), { protocols: [`base64url.bearer.authorization.k8s.io.${t}`], headers: { origin: 'https://evil.example' } })
    expect(evil.status).toBe(403)
    for (const origin of ['null', 'https://app.example.evil.example', 'http://app.example']) {
      expect((await open(wsUrl('/browser/room'), { protocols: [`base64url.bearer.authorization.k8s.io.${t}`], headers: { origin } })).status, origin).toBe(403)
    }
    // A client that is no browser sends no Origin: not at that risk, not refused.
    const { ws } = await open(wsUrl('/browser/room'), { protocols: ['chat', `base64url.bearer.authorization.k8s.io.${t}`] })
    ws!.close()
  })

  it('an idle tunnel is closed (1001)', async () => {
    const { ws } = await open(wsUrl('/live/room'), { headers: { authorization: `Bearer ${await token()}` } })
    expect((await closed(ws!)).code).toBe(1001)
  })

  it('counts tunnels: open, closed by reason, duration', async () => {
    const text = await g.gateway.metrics.registry.metrics()
    expect(text).toMatch(/gateway_websocket_closes_total\{route="browser",reason="token_expired"\} [1-9]/)
    expect(text).toMatch(/gateway_websocket_closes_total\{route="live",reason="idle"\} [1-9]/)
    expect(text).toMatch(/gateway_websocket_open\{route="live"\} 0/)
    expect(text).toMatch(/gateway_websocket_duration_seconds_count\{route="live"\} [1-9]/)
  })

  it('a drain closes open tunnels with 1001', async () => {
    const { ws } = await open(wsUrl('/browser/room'), { protocols: ['chat', `base64url.bearer.authorization.k8s.io.${Buffer.from(await token()).toString('base64url')}`], headers: { origin: 'https://app.example' } })
    const end = closed(ws!)
    g.gateway.startDrain()
    expect((await end).code).toBe(1001)
  })
})

describe('WebSocket over TLS on both sides', () => {
  it('wss:// to the HTTPS listener, tunnelled to a wss:// upstream verified against its CA', async () => {
    const { TestCa } = await import('../helpers/pki.js')
    const { createServer } = await import('node:https')
    const { mkdtemp, writeFile } = await import('node:fs/promises')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const { startServer } = await import('../helpers/running.js')
    const ca = await TestCa.create('WS CA')
    const leaf = await ca.issue({ cn: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'] })
    const secure = createServer({ cert: leaf.cert, key: leaf.key })
    const wss = new WebSocketServer({ server: secure })
    const received: Array<IncomingMessage['headers']> = []
    wss.on('connection', (socket, req) => {
      received.push(req.headers)
      socket.on('message', (m) => socket.send(`tls:${m.toString()}`))
    })
    await new Promise<void>((r) => secure.listen(0, '127.0.0.1', r))
    const dir = await mkdtemp(join(tmpdir(), 'gw-wss-'))
    for (const [name, text] of Object.entries({ 'ca.pem': ca.pem, 'tls.crt': leaf.cert, 'tls.key': leaf.key, 'issuer.json': JSON.stringify(key.publicJwk) })) await writeFile(join(dir, name), text)
    const running = await startServer(`
server: { listen: false, drain_timeout: 2s, tls: { listen: "127.0.0.1:0", cert: ${dir}/tls.crt, key: ${dir}/tls.key } }
admin: { listen: "127.0.0.1:0" }
issuers:
  - { id: corp, issuer: "${ISS}", keys: [{ file: ${dir}/issuer.json }], audiences: [api] }
upstreams:
  chat: { url: "https://127.0.0.1:${(secure.address() as { port: number }).port}", tls: { ca: ${dir}/ca.pem } }
routes:
  - { id: live, match: { path: /live/* }, upstream: chat, auth: { issuers: [corp], scopes: none }, websocket: true }
`)
    try {
      const ws = new WebSocket(running.url.replace('https:', 'wss:') + '/live/x', { ca: ca.pem, headers: { authorization: `Bearer ${await token()}` } })
      await new Promise((r, j) => {
        ws.once('open', r)
        ws.once('error', j)
      })
      const reply = new Promise<string>((r) => ws.once('message', (m) => r(m.toString())))
      ws.send('over tls')
      expect(await reply).toBe('tls:over tls')
      expect(received.at(-1)!['x-forwarded-proto']).toBe('https')
      // A drain closes it (1001) and the process can stop.
      const end = closed(ws)
      await running.drain()
      expect((await end).code).toBe(1001)
    } finally {
      await new Promise((r) => secure.close(r))
    }
  })
})
