import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { rawConnect } from '../helpers/raw.js'
import { send, startEchoUpstream, type Echoed } from '../helpers/servers.js'
import { parseConfig } from '../../src/config/load.js'
import { ConfigError } from '../../src/config/errors.js'

// Every server on the path must agree on the host and on what is being
// asked: one Host, a well-formed one, an absolute-form target only with that
// same authority; an upgrade is refused rather than quietly dropped; and
// forwarded headers are believed only from trusted proxy addresses.

let upstream: Awaited<ReturnType<typeof startEchoUpstream>>
let g: TestGateway
let trustingOthers: TestGateway
beforeAll(async () => {
  upstream = await startEchoUpstream()
  const config = (trust: string) => `
server: { listen: "127.0.0.1:0"${trust} }
upstreams: { api: { url: "${upstream.url}" } }
routes:
  - { id: public, match: { path: "/*" }, upstream: api, auth: public }
  - { id: admin, match: { path: "/*", host: admin.example.com }, upstream: api, auth: public }
`
  g = await startGateway(config(''))
  trustingOthers = await startGateway(config(', trust_proxy: ["10.0.0.0/8", "192.168.0.0/16"]'))
})
afterAll(async () => {
  await g.close()
  await trustingOthers.close()
  await upstream.close()
})

async function raw(url: string, head: string): Promise<string> {
  const c = await rawConnect(url)
  c.write(head)
  const text = await c.until(/HTTP\/1\.1 \d{3}/)
  c.destroy()
  return text
}

describe('Host', () => {
  for (const [a, b] of [['Host', 'Host'], ['Host', 'host'], ['HOST', 'hOsT']]) {
    it(`two Host headers (${a}, ${b}) are 400 and never forwarded`, async () => {
      const before = upstream.received.length
      const text = await raw(g.url, `GET /x HTTP/1.1\r\n${a}: public.example.com\r\n${b}: admin.example.com\r\n\r\n`)
      expect(text).toMatch(/^HTTP\/1\.1 400/)
      expect(upstream.received.length).toBe(before)
    })
  }

  for (const host of ['admin.example.com@evil.example', 'a b', 'admin.example.com/x', 'admin.example.com:80:80', '[::1']) {
    it(`a malformed Host ${JSON.stringify(host)} is 400`, async () => {
      expect(await raw(g.url, `GET /x HTTP/1.1\r\nHost: ${host}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 400/)
    })
  }

  it('an absolute-form target is served when its authority is the Host', async () => {
    const text = await raw(g.url, 'GET http://Public.Example.com/x?q=1 HTTP/1.1\r\nHost: public.example.com\r\n\r\n')
    expect(text).toMatch(/^HTTP\/1\.1 200/)
    expect(text).toContain('"url":"/x?q=1"')
  })

  for (const target of ['http://admin.example.com/x', 'http://user@public.example.com/x', 'https://other.example/x', 'http:///x']) {
    it(`an absolute-form target ${target} whose authority is not the Host is 400`, async () => {
      const before = upstream.received.length
      expect(await raw(g.url, `GET ${target} HTTP/1.1\r\nHost: public.example.com\r\n\r\n`)).toMatch(/^HTTP\/1\.1 400/)
      expect(upstream.received.length).toBe(before)
    })
  }
})

describe('Upgrade', () => {
  for (const [upgrade, connection] of [['websocket', 'Upgrade'], ['WebSocket', 'keep-alive, upgrade'], ['foo/1', 'upgrade'], ['websocket', 'close']] as const) {
    it(`Upgrade: ${upgrade} is refused with 501 and a reason, never forwarded as a plain request`, async () => {
      const before = upstream.received.length
      const res = await send(g.url, { path: '/socket', headers: [['Upgrade', upgrade], ['Connection', connection], ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='], ['Sec-WebSocket-Version', '13']] })
      expect(res.status).toBe(501)
      expect(res.json()).toMatchObject({ error: 'not_implemented' })
      expect(upstream.received.length).toBe(before)
    })
  }

  it('Upgrade: h2c may be ignored (RFC 9113): the request is served in HTTP/1.1, without the upgrade headers', async () => {
    const res = await send(g.url, { path: '/x', headers: [['Upgrade', 'h2c'], ['Connection', 'Upgrade, HTTP2-Settings'], ['HTTP2-Settings', 'AAMAAABkAAQAoAAAAAIAAAAA']] })
    expect(res.status).toBe(200)
    const h = res.json<Echoed>().headers
    expect(h.upgrade).toBeUndefined()
    expect(h['http2-settings']).toBeUndefined()
  })

  it('an ignored upgrade with a body is refused (501), never forwarded without it', async () => {
    const res = await send(g.url, { method: 'POST', path: '/x', headers: [['Upgrade', 'h2c'], ['Connection', 'Upgrade, HTTP2-Settings'], ['HTTP2-Settings', 'AAMAAABkAAQAoAAAAAIAAAAA'], ['Content-Type', 'text/plain'], ['Content-Length', '5']], body: 'hello' })
    expect(res.status).toBe(501)
  })
})

describe('trusted proxies', () => {
  it('forwarded headers from a client outside the trusted ranges are ignored', async () => {
    const res = await send(trustingOthers.url, { path: '/x', headers: [['X-Forwarded-For', '10.1.2.3'], ['X-Forwarded-Host', 'admin.example.com'], ['X-Forwarded-Proto', 'https']] })
    expect(res.status).toBe(200)
    expect((await trustingOthers.requestLog(res.headers['x-request-id'])).route).toBe('public')
    const h = res.json<Echoed>().headers
    expect(h['x-forwarded-for']).toBe('127.0.0.1')
    expect(h['x-forwarded-proto']).toBe('http')
    expect(h['x-forwarded-host']).toBe(new URL(trustingOthers.url).host)
  })

  for (const value of ['true', '1', '2']) {
    it(`trust_proxy: ${value} is refused: it would believe whoever connects directly`, () => {
      const yaml = `server: { trust_proxy: ${value} }\nupstreams: { a: { echo: true } }\nroutes: [{ id: r, match: { path: /r }, upstream: a, auth: public }]\n`
      try {
        parseConfig(yaml, 'g.yaml')
        expect.unreachable()
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError)
        expect((err as ConfigError).issues[0]!.path).toBe('server.trust_proxy')
      }
    })
  }
})
