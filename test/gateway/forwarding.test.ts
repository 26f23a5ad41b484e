import { createHash, randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { listen, send, startEchoUpstream, type Echoed, type Listening } from '../helpers/servers.js'

let echo: Listening & { received: Echoed[] }
let slow: Listening
let flaky: Listening & { hits: number }
let gw: TestGateway
let trusting: TestGateway
let special: Listening & { aborted: number; big: Buffer }

beforeAll(async () => {
  echo = await startEchoUpstream()
  slow = await listen((_req, res) => setTimeout(() => res.end('late'), 2000))
  const state = { hits: 0 }
  flaky = Object.assign(state, await listen((_req, res) => {
    state.hits++
    res.statusCode = 503
    res.setHeader('retry-after', '1')
    res.setHeader('x-upstream-detail', 'kept')
    res.end('upstream says no')
  }))
  const specialState = { aborted: 0, big: randomBytes(8 * 1024 * 1024) }
  special = Object.assign(specialState, await listen((req, res) => {
    if (req.url === '/special/big') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(specialState.big.length) })
      res.end(specialState.big)
    } else if (req.url === '/special/hop') {
      res.writeHead(200, { Connection: 'X-Upstream-Secret, keep-alive', 'X-Upstream-Secret': 'internal', 'Keep-Alive': 'timeout=5', 'X-Kept': 'yes', 'Set-Cookie': ['a=1', 'b=2'] })
      res.end('ok')
    } else if (req.url === '/special/hang') {
      req.on('close', () => specialState.aborted++)
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('partial')
    } else if (req.url === '/special/die') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' })
      res.write('half')
      setTimeout(() => res.socket?.destroy(), 20)
    }
  }))
  const config = (extra: string) => `
server: { realm: "test-realm" ${extra} }
upstreams:
  echo: { url: "${echo.url}" }
  based: { url: "${echo.url}/v2/base/" }
  host: { url: "${echo.url}", preserve_host: true }
  slow: { url: "${slow.url}", timeout: 200ms }
  flaky: { url: "${flaky.url}" }
  dead: { url: "http://127.0.0.1:1" }   # nothing listens on port 1; a closed ephemeral port could be reused by a parallel test
  special: { url: "${special.url}" }
routes:
  - { id: special, match: { path: /special/* }, upstream: special, auth: public }
  - { id: echo, match: { path: /echo/* }, upstream: echo, auth: public }
  - { id: stripped, match: { path: /api/orders/* }, upstream: based, strip_prefix: /api, auth: public }
  - { id: host, match: { path: /host/* }, upstream: host, auth: public }
  - { id: slow, match: { path: /slow }, upstream: slow, auth: public }
  - { id: flaky, match: { path: /flaky }, upstream: flaky, auth: public }
  - { id: dead, match: { path: /dead }, upstream: dead, auth: public }
`
  gw = await startGateway(config(''))
  trusting = await startGateway(config(', trust_proxy: ["127.0.0.1/8"]'))
})
afterAll(async () => {
  await gw.close()
  await trusting.close()
  await echo.close()
  await slow.close()
  await flaky.close()
  await special.close()
})

describe('forwarding', () => {
  it('streams a large binary body unchanged', async () => {
    const body = randomBytes(3 * 1024 * 1024)
    const sha = createHash('sha256').update(body).digest('hex')
    const sized = await send(gw.url, { method: 'PUT', path: '/echo/blob', headers: [['Content-Type', 'application/octet-stream'], ['Content-Length', String(body.length)]], body })
    expect(sized.status).toBe(200)
    expect(sized.json<Echoed>()).toMatchObject({ method: 'PUT', bodyLength: body.length, bodySha256: sha })
    expect(sized.json<Echoed>().headers['content-length']).toBe(String(body.length))
    const chunked = await send(gw.url, { method: 'POST', path: '/echo/blob', headers: [['Content-Type', 'image/png']], body })
    expect(chunked.json<Echoed>()).toMatchObject({ bodyLength: body.length, bodySha256: sha })
  })

  it('passes JSON bodies byte for byte (no re-encoding)', async () => {
    const body = '{ "b" : 2,\n  "a":1 }'
    const res = await send(gw.url, { method: 'POST', path: '/echo/j', headers: [['Content-Type', 'application/json']], body })
    expect(res.json<Echoed>().body).toBe(body)
  })

  it('keeps HEAD, method and query', async () => {
    const head = await send(gw.url, { method: 'HEAD', path: '/echo/h?a=1' })
    expect(head.status).toBe(200)
    expect(echo.received.at(-1)).toMatchObject({ method: 'HEAD', url: '/echo/h?a=1' })
    const del = await send(gw.url, { method: 'DELETE', path: '/echo/d?x=%2F&y' })
    expect(del.json<Echoed>()).toMatchObject({ method: 'DELETE', url: '/echo/d?x=%2F&y' })
  })

  it('strips the route prefix and prepends the upstream base path', async () => {
    const res = await send(gw.url, { path: '/api/orders/7?q=1' })
    expect(res.json<Echoed>().url).toBe('/v2/base/orders/7?q=1')
  })

  it('sends the upstream host, or the client host with preserve_host', async () => {
    expect((await send(gw.url, { path: '/echo/x', headers: [['Host', 'public.example']] })).json<Echoed>().headers.host).toBe(new URL(echo.url).host)
    expect((await send(gw.url, { path: '/host/x', headers: [['Host', 'public.example']] })).json<Echoed>().headers.host).toBe('public.example')
  })

  it('answers 502 when the upstream refuses the connection, without details', async () => {
    const res = await send(gw.url, { path: '/dead' })
    expect(res.status).toBe(502)
    expect(res.json()).toMatchObject({ error: 'bad_gateway', error_description: 'the upstream service could not be reached' })
    expect(res.body).not.toMatch(/ECONNREFUSED|127\.0\.0\.1/)
    const log = await gw.requestLog(res.headers['x-request-id'])
    expect(log).toMatchObject({ reason: 'upstream_unavailable', decision: 'allow' })
    expect(gw.logs.some((l) => l.msg === 'request failed' && JSON.stringify(l).includes('ECONNREFUSED'))).toBe(true)
  })

  it('answers 504 when the upstream is slower than its timeout', async () => {
    const started = Date.now()
    const res = await send(gw.url, { path: '/slow' })
    expect(res.status).toBe(504)
    expect(Date.now() - started).toBeLessThan(1500)
    expect((await gw.requestLog(res.headers['x-request-id'])).reason).toBe('upstream_timeout')
  })

  it('passes an upstream 503 through once, without retrying', async () => {
    const before = flaky.hits
    const res = await send(gw.url, { path: '/flaky' })
    expect(res.status).toBe(503)
    expect(res.body).toBe('upstream says no')
    expect(res.headers['x-upstream-detail']).toBe('kept')
    expect(flaky.hits - before).toBe(1)
  })

  it('keeps a well-formed X-Request-Id and replaces a bad one', async () => {
    const kept = await send(gw.url, { path: '/echo/x', headers: [['X-Request-Id', 'abc-123']] })
    expect(kept.headers['x-request-id']).toBe('abc-123')
    expect(kept.json<Echoed>().headers['x-request-id']).toBe('abc-123')
    const replaced = await send(gw.url, { path: '/echo/x', headers: [['X-Request-Id', 'a b\t"<script>']] })
    expect(replaced.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/)
    expect(replaced.json<Echoed>().headers['x-request-id']).toBe(replaced.headers['x-request-id'])
  })

  it('believes X-Forwarded-* only from trusted proxies', async () => {
    const headers: Array<[string, string]> = [
      ['X-Forwarded-For', '203.0.113.9'],
      ['X-Forwarded-Proto', 'https'],
      ['X-Forwarded-Host', 'api.example.com'],
    ]
    const untrusted = (await send(gw.url, { path: '/echo/x', headers })).json<Echoed>().headers
    expect(untrusted).toMatchObject({ 'x-forwarded-for': '127.0.0.1', 'x-forwarded-proto': 'http' })
    const trusted = (await send(trusting.url, { path: '/echo/x', headers })).json<Echoed>().headers
    expect(trusted).toMatchObject({ 'x-forwarded-for': '203.0.113.9, 127.0.0.1', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'api.example.com' })
  })

  it('streams a large response with backpressure, intact', async () => {
    const res = await new Promise<{ length: number; sha: string }>((resolve, reject) => {
      import('node:http').then(({ get }) =>
        get(`${gw.url}/special/big`, (r) => {
          const hash = createHash('sha256')
          let length = 0
          r.pause()
          // A slow reader: the gateway must pause the upstream rather than buffer.
          const tick = setInterval(() => r.read(), 1)
          r.on('readable', () => {
            let chunk: Buffer | null
            while ((chunk = r.read() as Buffer | null) !== null) {
              hash.update(chunk)
              length += chunk.length
            }
          })
          r.on('end', () => {
            clearInterval(tick)
            resolve({ length, sha: hash.digest('hex') })
          })
          r.on('error', reject)
        }),
      )
    })
    expect(res.length).toBe(special.big.length)
    expect(res.sha).toBe(createHash('sha256').update(special.big).digest('hex'))
  })

  it('drops hop-by-hop response headers and those the upstream Connection names', async () => {
    const res = await send(gw.url, { path: '/special/hop' })
    expect(res.headers['x-upstream-secret']).toBeUndefined()
    expect(res.headers['keep-alive']).toBeUndefined()
    expect(res.headers['x-kept']).toBe('yes')
    expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2'])
    expect(res.headers['x-request-id']).toBeTruthy()
  })

  it('aborts the upstream request when the client goes away', async () => {
    const before = special.aborted
    await new Promise<void>((resolve) => {
      import('node:http').then(({ get }) => {
        const req = get(`${gw.url}/special/hang`, (r) => {
          r.once('data', () => {
            req.destroy()
            resolve()
          })
        })
        req.on('error', () => resolve())
      })
    })
    for (let i = 0; i < 100 && special.aborted === before; i++) await new Promise((r) => setTimeout(r, 10))
    expect(special.aborted).toBe(before + 1)
    const log = gw.logs.find((l) => l.msg === 'request' && l.path === '/special/hang')
    expect(log).toMatchObject({ aborted: true })
  })

  it('cuts the client connection when the upstream dies mid-body (never a truncated 200 that looks whole)', async () => {
    await expect(send(gw.url, { path: '/special/die' })).rejects.toThrow()
  })

  it('forwards a body without content type, and handles Expect: 100-continue', async () => {
    const none = await send(gw.url, { method: 'POST', path: '/echo/n', headers: [['Content-Length', '5']], body: 'hello' })
    expect(none.json<Echoed>().body).toBe('hello')
    const cont = await send(gw.url, { method: 'PUT', path: '/echo/c', headers: [['Expect', '100-continue'], ['Content-Length', '3'], ['Content-Type', 'text/plain']], body: 'abc' })
    expect(cont.status).toBe(200)
    expect(cont.json<Echoed>().body).toBe('abc')
    expect(cont.json<Echoed>().headers.expect).toBeUndefined()
  })

  it('uses the configured realm in challenges', async () => {
    const protectedGw = await startGateway(`
server: { realm: "orders" }
upstreams: { echo: { url: "${echo.url}" } }
issuers: [{ id: i, issuer: "https://i.example", jwks_uri: "http://127.0.0.1:1/jwks", audiences: [a] }]
routes: [{ id: r, match: { path: /r }, upstream: echo, auth: { issuers: [i], scopes: none } }]
`)
    const res = await send(protectedGw.url, { path: '/r' })
    expect(res.headers['www-authenticate']).toBe('Bearer realm="orders"')
    await protectedGw.close()
  })
})

describe('unusual requests', () => {
  it('an HTTP/1.0 request without Host is served, with no empty X-Forwarded-Host', async () => {
    const { connect } = await import('node:net')
    const raw = await new Promise<string>((resolve) => {
      const s = connect(Number(new URL(gw.url).port), '127.0.0.1', () => s.write('GET /echo/old HTTP/1.0\r\n\r\n'))
      let d = ''
      s.on('data', (c: Buffer) => (d += c.toString()))
      s.on('close', () => resolve(d))
    })
    expect(raw.startsWith('HTTP/1.1 200')).toBe(true)
    const echoed = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as Echoed
    expect(echoed.headers['x-forwarded-host']).toBeUndefined()
    expect(echoed.headers['x-forwarded-for']).toBe('127.0.0.1')
  })

  it('a form body over server.body_limit is 413 and never forwarded', async () => {
    const small = await startGateway(`
server: { body_limit: 1024 }
upstreams: { echo: { url: "${echo.url}" } }
issuers: [{ id: i, issuer: "https://i.example", jwks_uri: "http://127.0.0.1:1/jwks", audiences: [a] }]
routes: [{ id: r, match: { path: /r, methods: [POST] }, upstream: echo, auth: public }]
`)
    try {
      const before = echo.received.length
      // A route whose rules depend on the method reads form bodies (bounded) for _method.
      const res = await send(small.url, { method: 'POST', path: '/r', headers: [['Content-Type', 'application/x-www-form-urlencoded']], body: 'a=' + 'x'.repeat(4096) })
      expect(res.status).toBe(413)
      expect(res.json()).toMatchObject({ error: 'payload_too_large' })
      expect(echo.received.length).toBe(before)
    } finally {
      await small.close()
    }
  })
})
