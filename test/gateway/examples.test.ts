import { execFile } from 'node:child_process'
import { connect } from 'node:net'
import { connect as http2Connect } from 'node:http2'
import WebSocket, { WebSocketServer } from 'ws'
import { readdirSync } from 'node:fs'
import { promisify } from 'node:util'
import { readFile } from 'node:fs/promises'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose'
import { buildAdmin } from '../../src/admin/app.js'
import { buildGateway, type Gateway } from '../../src/app.js'
import { compileConfig } from '../../src/config/compile.js'
import { parseConfig } from '../../src/config/load.js'
import { freePort } from '../helpers/redis.js'
import { bearer, send } from '../helpers/servers.js'
import { startOtlpReceiver, type OtlpReceiver } from '../helpers/otlp-receiver.js'

// Every example under config/examples/ starts as the README shows it, and
// its README steps hold. An example without steps here fails the first test.

const run = promisify(execFile)

/** What curl prints for an upgrade request: the answer's head and first bytes (the connection may stay open). */
function rawUpgrade(url: string, path: string, headers: Array<[string, string]>): Promise<string> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(u.port), u.hostname, () => socket.write(`GET ${path} HTTP/1.1\r\nHost: ${u.host}\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`))
    let got = ''
    socket.on('data', (c: Buffer) => (got += c.toString('latin1')))
    socket.on('error', reject)
    setTimeout(() => {
      socket.destroy()
      resolve(got)
    }, 300)
  })
}

const EXAMPLES = readdirSync('config/examples').filter((f) => f.endsWith('.yaml'))

let running: Gateway | undefined
let admin: Awaited<ReturnType<typeof buildAdmin>> | undefined
afterEach(async () => {
  await admin?.close()
  await running?.close()
  running = undefined
  admin = undefined
})

/** The admin listener of the running example (port 0), for the steps that use it. */
async function adminUrl(): Promise<string> {
  admin = buildAdmin(running!)
  return admin.listen({ host: '127.0.0.1', port: 0 })
}

/** The OTLP endpoint the tracing example exports to, as its README says: from the environment. */
let otlp: OtlpReceiver | undefined
afterAll(async () => {
  await otlp?.close()
})

/** The WebSocket service behind protocols.yaml's /ws/* (WS_UPSTREAM_URL), with what each connection received. */
let wsUpstream: { url: string; received: Array<Record<string, string | string[] | undefined>>; close(): Promise<void> } | undefined
afterAll(async () => {
  await wsUpstream?.close()
})

async function startWsUpstream(): Promise<NonNullable<typeof wsUpstream>> {
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  await new Promise((r) => server.once('listening', r))
  const received: Array<Record<string, string | string[] | undefined>> = []
  server.on('connection', (socket, req) => {
    received.push(req.headers)
    socket.on('message', (m) => socket.send(`echo:${m.toString()}`))
  })
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, received, close: () => new Promise((r) => server.close(() => r())) }
}

/** The h2c listener's port of the running example (http2.yaml). */
let h2cPort = 0

async function start(name: string): Promise<string> {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const file = `config/examples/${name}`
  const env: NodeJS.ProcessEnv = { GATEWAY_LISTEN: `127.0.0.1:${port}`, GATEWAY_H2C_LISTEN: `127.0.0.1:${(h2cPort = await freePort())}`, ADMIN_LISTEN: '127.0.0.1:0', PUBLIC_URL: url }
  if (name === 'protocols.yaml') {
    wsUpstream ??= await startWsUpstream()
    env.WS_UPSTREAM_URL = wsUpstream.url
  }
  if (name === 'tracing.yaml') {
    otlp ??= await startOtlpReceiver()
    Object.assign(env, { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_BSP_SCHEDULE_DELAY: '20' })
  }
  const config = await compileConfig(parseConfig(await readFile(file, 'utf8'), file, env))
  running = await buildGateway({ config })
  await running.listen() // every listener the example names (the h2c one too)
  return url
}

async function demoToken(url: string, scope?: string, client = 'demo-client:demo-secret-change-me'): Promise<string> {
  const res = await send(url, {
    method: 'POST',
    path: '/oauth2/token',
    headers: [['Authorization', `Basic ${Buffer.from(client).toString('base64')}`], ['Content-Type', 'application/x-www-form-urlencoded']],
    body: 'grant_type=client_credentials' + (scope ? `&scope=${encodeURIComponent(scope)}` : ''),
  })
  expect(res.status).toBe(200)
  return res.json<{ access_token: string }>().access_token
}

const STEPS: Record<string, (url: string) => Promise<void>> = {
  'protocols.yaml': async (url) => {
    const token = await demoToken(url)
    const ws = url.replace('http:', 'ws:') + '/ws/room'
    // A token-less upgrade: 401, and the service never sees it.
    const before = wsUpstream!.received.length
    const refused = await new Promise<number>((resolve) => {
      const w = new WebSocket(ws)
      w.once('unexpected-response', (_req, res) => resolve(res.statusCode!))
      w.once('open', () => resolve(101))
    })
    expect(refused).toBe(401)
    expect(wsUpstream!.received.length).toBe(before)
    // An allowed one reaches it with the identity headers, and messages go both ways.
    const socket = new WebSocket(ws, { headers: { authorization: `Bearer ${token}` } })
    await new Promise((r) => socket.once('open', r))
    const reply = new Promise<string>((r) => socket.once('message', (m) => r(String(m))))
    socket.send('hello')
    expect(await reply).toBe('echo:hello')
    expect(wsUpstream!.received.at(-1)!['x-client-id']).toBe('demo-client')
    socket.close()
    // /orders/* over h2c on the main listener, as in the quickstart.
    const session = http2Connect(url)
    try {
      const status = await new Promise<unknown>((resolve, reject) => {
        const stream = session.request({ ':path': '/orders/42', authorization: `Bearer ${token}` }, { endStream: true })
        stream.on('response', (h) => resolve(h[':status']))
        stream.on('error', reject)
        stream.resume()
      })
      expect(status).toBe(200)
    } finally {
      session.close()
    }
  },
  'http2.yaml': async (url) => {
    const token = await demoToken(url)
    const session = http2Connect(`http://127.0.0.1:${h2cPort}`)
    const h2 = (headers: Record<string, string>, body?: string) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const stream = session.request(headers, body === undefined ? { endStream: true } : {})
        let got: Record<string, unknown> = {}
        stream.on('response', (h) => (got = { ...h }))
        stream.on('trailers', (t) => (got = { ...got, ...t }))
        stream.on('end', () => resolve(got))
        stream.on('error', reject)
        stream.resume()
        if (body !== undefined) stream.end(body)
      })
    try {
      // curl --http2-prior-knowledge: the quickstart's route, over h2c.
      expect((await h2({ ':path': '/orders/1', authorization: `Bearer ${token}` }))[':status']).toBe(200)
      // A gRPC call without the scope: HTTP 200, grpc-status 7 in the trailers, the challenge kept.
      const grpc = await h2({ ':method': 'POST', ':path': '/demo.Echo/Say', 'content-type': 'application/grpc', te: 'trailers', authorization: `Bearer ${token}` }, '')
      expect(grpc).toMatchObject({ ':status': 200, 'grpc-status': '7', 'grpc-message': 'the token lacks a scope this route requires' })
      expect(grpc['www-authenticate']).toMatch(/insufficient_scope/)
      const none = await h2({ ':method': 'POST', ':path': '/demo.Echo/Say', 'content-type': 'application/grpc', te: 'trailers' }, '')
      expect(none['grpc-status']).toBe('16')
    } finally {
      session.close()
    }
  },
  'websocket.yaml': async (url) => {
    const token = await demoToken(url)
    const handshake: Array<[string, string]> = [['Connection', 'Upgrade'], ['Upgrade', 'websocket'], ['Sec-WebSocket-Version', '13'], ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ==']]
    // curl without a token: 401 with the challenge, and no upgrade.
    const refused = await rawUpgrade(url, '/live/room', handshake)
    expect(refused).toMatch(/^HTTP\/1\.1 401 /)
    expect(refused).toMatch(/www-authenticate: Bearer /i)
    // With the token: 101, and the echo's first message says what a service would receive.
    const switched = await rawUpgrade(url, '/live/room', [...handshake, ['Authorization', `Bearer ${token}`]])
    expect(switched).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/)
    expect(switched).toContain('Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=')
    expect(switched).toContain('"x-client-id":"demo-client"')
    // A plain route: 501.
    expect(await rawUpgrade(url, '/history/1', [...handshake, ['Authorization', `Bearer ${token}`]])).toMatch(/^HTTP\/1\.1 501 /)
    // The node snippet: messages echoed; a page of another origin is refused; a browser's subprotocol token works.
    const ws = new WebSocket(url.replace('http:', 'ws:') + '/live/room', { headers: { authorization: `Bearer ${token}` } })
    const messages: string[] = []
    ws.on('message', (m) => messages.push(String(m)))
    await new Promise((r) => ws.once('open', r))
    ws.send('hello')
    await new Promise((r) => setTimeout(r, 100))
    expect(messages[1]).toBe('hello')
    ws.close()
    const evil = await new Promise<number>((resolve) => {
      const w = new WebSocket(url.replace('http:', 'ws:') + '/live/room', { headers: { authorization: `Bearer ${token}`, origin: 'https://evil.example' } })
      w.once('unexpected-response', (_req, res) => resolve(res.statusCode!))
      w.once('open', () => resolve(101))
    })
    expect(evil).toBe(403)
  },
  'sender-constrained.yaml': async (url) => {
    // The README's client: a DPoP-bound token, a nonce asked for and followed, the token refused as Bearer.
    const { stdout } = await run('node', ['examples/dpop-client/call.mjs', url, '/payments/1'])
    expect(stdout).toContain('token_type: DPoP')
    expect(stdout).toMatch(/nonce asked for: DPoP .*error="use_dpop_nonce"/)
    expect(stdout).toMatch(/^DPoP: 200 .*"x-client-id":"demo-client"/m)
    expect(stdout).toMatch(/^as Bearer: 401 DPoP .*error="invalid_token"/m)
    // A plain bearer token: accepted on /orders, refused on /payments (DPoP-bound tokens only) with a DPoP challenge.
    const token = await demoToken(url)
    expect((await send(url, { path: '/orders/1', headers: [bearer(token)] })).status).toBe(200)
    const payments = await send(url, { path: '/payments/1', headers: [bearer(token)] })
    expect(payments.status).toBe(401)
    expect(payments.headers['www-authenticate']).toMatch(/^DPoP realm="gateway", error="invalid_token".*algs="ES256/)
    const metadata = (await send(url, { path: '/.well-known/oauth-protected-resource' })).json()
    expect(metadata.dpop_signing_alg_values_supported).toContain('ES256')
  },
  'tracing.yaml': async (url) => {
    const token = await demoToken(url)
    const trace = '4bf92f3577b34da6a3ce929d0e0e4736'
    const res = await send(url, { path: '/orders/1', headers: [bearer(token), ['traceparent', `00-${trace}-00f067aa0ba902b7-01`]] })
    expect(res.status).toBe(200)
    // The echo shows what a service would receive: the same trace, the gateway's span as parent.
    const sent = res.json<{ headers: Record<string, string> }>().headers.traceparent!
    expect(sent).toMatch(new RegExp(`^00-${trace}-[0-9a-f]{16}-01$`))
    const parent = sent.split('-')[2]
    // The spans reach the endpoint of OTEL_EXPORTER_OTLP_ENDPOINT (OTLP/protobuf by default).
    const call = await otlp!.waitFor((s) => s.spanId === parent)
    const server = await otlp!.waitFor((s) => s.spanId === call.parentSpanId)
    expect(server).toMatchObject({ traceId: trace, parentSpanId: '00f067aa0ba902b7', name: 'GET /orders/*', kind: 2 })
    expect(otlp!.contentTypes).toContain('application/x-protobuf')
  },
  'rate-limits.yaml': async (url) => {
    const token = await demoToken(url)
    const other = await demoToken(url, undefined, 'other-client:other-secret-change-me')
    // 5 per 10 s per client: allowed answers say the policy and what is left; the 6th is 429 with Retry-After.
    const calls = []
    for (let i = 0; i < 6; i++) calls.push(await send(url, { path: '/orders/1', headers: [bearer(token)] }))
    expect(calls.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 429])
    expect(calls[0]!.headers['ratelimit-policy']).toBe('"per-client";q=5;w=10')
    expect(calls[0]!.headers.ratelimit).toBe('"per-client";r=4;t=2')
    expect(calls[5]!.headers['retry-after']).toBe('2')
    expect(calls[5]!.json()).toMatchObject({ error: 'too_many_requests' })
    // The other client's bucket is its own.
    const theirs = await send(url, { path: '/orders/1', headers: [bearer(other)] })
    expect(theirs.status).toBe(200)
    expect(theirs.headers.ratelimit).toBe('"per-client";r=4;t=2')
    // Other routes (the token endpoint too) have the default limit by address.
    const meta = await send(url, { path: '/.well-known/oauth-authorization-server' })
    expect(meta.headers['ratelimit-policy']).toBe('"per-address";q=100;w=60')
  },
  'upstream-trust.yaml': async (url) => {
    const token = await demoToken(url)
    // The service gets an assertion for it ("orders"), verifiable with the admin listener's JWKS.
    const res = await send(url, { path: '/orders/1', headers: [bearer(token), ['X-Gateway-Assertion', 'forged'], ['x_gateway_assertion', 'forged']] })
    expect(res.status).toBe(200)
    const headers = res.json<{ headers: Record<string, string> }>().headers
    const jwks = await send(await adminUrl(), { path: '/.well-known/gateway-jwks.json' })
    expect(jwks.status).toBe(200)
    const { payload } = await jwtVerify(headers['x-gateway-assertion']!, createLocalJWKSet(jwks.json()), { issuer: url, audience: 'orders', typ: 'gateway-assertion+jwt' })
    expect(payload).toMatchObject({ sub: 'demo-client', client_id: 'demo-client', scope: 'orders:read' })
    expect(payload.exp! - payload.iat!).toBeLessThanOrEqual(60)
    expect(Object.keys(headers).filter((h) => h.replace(/_/g, '-') === 'x-gateway-assertion')).toEqual(['x-gateway-assertion'])
    // A public route: no assertion, and the client's never arrives.
    const health = await send(url, { path: '/health', headers: [['X-Gateway-Assertion', decodeJwt(headers['x-gateway-assertion']!) ? headers['x-gateway-assertion']! : 'x']] })
    expect(Object.keys(health.json<{ headers: Record<string, string> }>().headers).filter((h) => h.includes('assertion'))).toEqual([])
  },
  'hardening.yaml': async (url) => {
    const token = await demoToken(url)
    // Headers upstreams trust never arrive as sent; folded paths are held to their rules.
    const read = await send(url, { path: '/ORDERS/42', headers: [bearer(token), ['X-Tenant-Admin', 'yes'], ['X_Internal_Role', 'root'], ['X-Forwarded-User', 'admin']] })
    expect(read.status).toBe(200)
    const seen = read.json<{ path: string; headers: Record<string, string> }>()
    expect(seen.path).toBe('/orders/42')
    expect(Object.keys(seen.headers).filter((h) => /tenant-admin|internal|forwarded-user/.test(h))).toEqual([])
    expect((await send(url, { path: '/Orders/42' })).status).toBe(401)
    // A method override is refused where the method matters…
    expect((await send(url, { method: 'POST', path: '/orders/42?_method=DELETE', headers: [bearer(token)] })).status).toBe(400)
    // …and authorized as both methods where the route allows it.
    expect((await send(url, { method: 'POST', path: '/legacy/1', headers: [bearer(token), ['X-HTTP-Method-Override', 'DELETE']] })).status).toBe(403)
    const writer = await demoToken(url, 'orders:read orders:write')
    expect((await send(url, { method: 'POST', path: '/legacy/1', headers: [bearer(writer), ['X-HTTP-Method-Override', 'DELETE']] })).status).toBe(200)
    // A body larger than the route takes is refused from its headers.
    expect((await send(url, { method: 'POST', path: '/legacy/1', headers: [bearer(writer), ['Content-Type', 'application/octet-stream'], ['Content-Length', '70000']], body: Buffer.alloc(70_000) })).status).toBe(413)
    // So is a chunked one, once it passes the limit.
    expect((await send(url, { method: 'POST', path: '/legacy/1', headers: [bearer(writer), ['Content-Type', 'application/octet-stream'], ['Transfer-Encoding', 'chunked']], body: Buffer.alloc(70_000) })).status).toBe(413)
    expect((await send(url, { path: '/health' })).status).toBe(200)
  },
  'route-policy.yaml': async (url) => {
    const token = await demoToken(url)
    // Claim rule: the token's client_id must be the :tenant segment.
    expect((await send(url, { path: '/tenants/demo-client/x', headers: [bearer(token)] })).status).toBe(200)
    const other = await send(url, { path: '/tenants/other/x', headers: [bearer(token)] })
    expect(other.status).toBe(403)
    expect(other.json()).toMatchObject({ error: 'access_denied' })
    expect(other.body).not.toContain('own-tenant')
    // Step-up: a client-credentials token never shows an MFA login.
    const admin = await send(url, { path: '/admin/x', headers: [bearer(token)] })
    expect(admin.status).toBe(401)
    expect(admin.headers['www-authenticate']).toMatch(/error="insufficient_user_authentication".*acr_values="urn:example:mfa", max_age=600/)
    // CORS: the preflight is answered without a token; the call itself needs one.
    const origin: [string, string] = ['Origin', 'https://app.example']
    const pre = await send(url, { method: 'OPTIONS', path: '/orders/1', headers: [origin, ['Access-Control-Request-Method', 'GET'], ['Access-Control-Request-Headers', 'authorization']] })
    expect(pre.status).toBe(204)
    expect(pre.headers['access-control-allow-origin']).toBe('https://app.example')
    expect(pre.headers['access-control-allow-headers']).toContain('Authorization')
    const call = await send(url, { path: '/orders/1', headers: [origin, bearer(token)] })
    expect(call.status).toBe(200)
    expect(call.headers['access-control-allow-origin']).toBe('https://app.example')
    const noToken = await send(url, { path: '/orders/1', headers: [origin] })
    expect(noToken.status).toBe(401)
    expect(noToken.headers['access-control-allow-origin']).toBe('https://app.example')
    const evil = await send(url, { method: 'OPTIONS', path: '/orders/1', headers: [['Origin', 'https://evil.example'], ['Access-Control-Request-Method', 'GET']] })
    expect(evil.status).toBe(403)
    expect(evil.headers['access-control-allow-origin']).toBeUndefined()
  },
}

describe('config/examples', () => {
  it('every example has its steps here', () => {
    expect(EXAMPLES.filter((e) => !STEPS[e])).toEqual([])
  })
  for (const name of EXAMPLES) {
    it(`${name} runs as the README shows`, async () => {
      await STEPS[name]!(await start(name))
    })
  }
})
