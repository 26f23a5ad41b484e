import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFixture, type Fixture } from '../helpers/fixture.js'
import { rawConnect, sleep } from '../helpers/raw.js'

// A refused request costs the gateway almost nothing: it is decided from its
// headers, answered before any byte of its body is read, never told
// "100 Continue", and its connection is closed so the body is never read.

let f: Fixture
let token: string
beforeAll(async () => {
  f = await startFixture()
  token = await f.token({ scope: 'orders:read orders:write' })
})
afterAll(() => f.close())

const head = (lines: string[]) => lines.join('\r\n') + '\r\n\r\n'

describe('a refused request with a body', () => {
  it('Expect: 100-continue without a token gets the final 401, never 100, and the connection closes', async () => {
    const c = await rawConnect(f.gw.url)
    c.write(head(['POST /orders HTTP/1.1', 'Host: x', 'Content-Type: application/json', 'Content-Length: 1048576', 'Expect: 100-continue']))
    const text = await c.until(/HTTP\/1\.1 401/)
    expect(text).not.toContain('100 Continue')
    expect(text.toLowerCase()).toContain('connection: close')
    await c.closed
  })

  for (const [what, extra] of [
    ['a form body without a token', ['Content-Type: application/x-www-form-urlencoded', 'Content-Length: 1048576']],
    ['a chunked body with a bad token', ['Authorization: Bearer not-a-jwt', 'Content-Type: application/x-www-form-urlencoded', 'Transfer-Encoding: chunked']],
    ['a body declared larger than the route takes', [`Authorization: Bearer TOKEN`, 'Content-Type: application/octet-stream', `Content-Length: ${20 * 1024 * 1024}`]],
  ] as const) {
    it(`${what} is answered before a byte of the body is sent, and none is read`, async () => {
      const c = await rawConnect(f.gw.url)
      c.write(head(['POST /orders HTTP/1.1', 'Host: x', ...extra.map((l) => l.replace('TOKEN', token))]))
      const text = await c.until(/HTTP\/1\.1 4\d\d/)
      expect(text).toMatch(/HTTP\/1\.1 (401|413)/)
      expect(text.toLowerCase()).toContain('connection: close')
      // What the client goes on sending is not read into the gateway: the connection ends.
      c.write(Buffer.alloc(64 * 1024, 0x61))
      expect(await c.closed).toBeLessThan(4000)
    })
  }

  it('40 clients each announcing 1 MiB forms without a token are all refused at once; nothing is forwarded', async () => {
    const before = f.upstream.received.length
    const conns = await Promise.all(Array.from({ length: 40 }, () => rawConnect(f.gw.url)))
    for (const c of conns) c.write(head(['POST /orders HTTP/1.1', 'Host: x', 'Content-Type: application/x-www-form-urlencoded', 'Content-Length: 1048576']) + 'a=')
    await Promise.all(conns.map((c) => c.until(/HTTP\/1\.1 401/)))
    expect(f.upstream.received.length).toBe(before)
    for (const c of conns) c.destroy()
  })
})

describe('an allowed request with a body', () => {
  it('Expect: 100-continue with a valid token gets 100 Continue, then its answer once the body is sent', async () => {
    const c = await rawConnect(f.gw.url)
    c.write(head(['POST /orders HTTP/1.1', 'Host: x', `Authorization: Bearer ${token}`, 'Content-Type: application/json', 'Content-Length: 7', 'Expect: 100-continue']))
    await c.until(/HTTP\/1\.1 100 Continue/)
    await sleep(50)
    expect(c.received()).not.toMatch(/HTTP\/1\.1 200/)
    c.write('{"a":1}')
    const text = await c.until(/HTTP\/1\.1 200[\s\S]*"bodyLength":7/)
    expect(text.indexOf('100 Continue')).toBeLessThan(text.indexOf('200 OK'))
    c.destroy()
  })

  it('a chunked body larger than the route takes is 413 and never reaches the upstream whole', async () => {
    const { startGateway } = await import('../helpers/gateway.js')
    const g = await startGateway(`
upstreams: { up: { url: "${f.upstream.url}" } }
limits: { body_buffer_bytes: 1024 }
routes: [{ id: r, match: { path: /r }, upstream: up, auth: public, max_body_bytes: 4096 }]
`)
    try {
      const c = await rawConnect(g.url)
      c.write(head(['POST /r HTTP/1.1', 'Host: x', 'Content-Type: application/octet-stream', 'Transfer-Encoding: chunked']))
      for (let i = 0; i < 10; i++) c.write(`400\r\n${'b'.repeat(1024)}\r\n`)
      c.write('0\r\n\r\n')
      await c.until(/HTTP\/1\.1 413/)
      expect(f.upstream.received.some((r) => r.bodyLength > 4096)).toBe(false)
      c.destroy()
    } finally {
      await g.close()
    }
  })
})
