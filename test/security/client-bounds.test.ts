import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { rawConnect, sleep } from '../helpers/raw.js'
import { send } from '../helpers/servers.js'

// Every resource a client can hold is bounded in time and count: a silent or
// trickling client is cut off, a slow sender holds no upstream connection, an
// upstream's connections are capped with a bounded queue, and a listener's.

let slowUpstream: Server & { held: Array<() => void>; port: number }
let g: TestGateway

async function startSlowUpstream() {
  const held: Array<() => void> = []
  const server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      const answer = () => res.end(JSON.stringify({ path: req.url }))
      if (req.url?.startsWith('/hold')) held.push(answer)
      else answer()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return Object.assign(server, { held, port: (server.address() as AddressInfo).port })
}

beforeAll(async () => {
  slowUpstream = await startSlowUpstream()
  g = await startGateway(`
limits:
  header_timeout: 500ms
  request_timeout: 1500ms
  body_idle_timeout: 400ms
  keep_alive_timeout: 300ms
  max_connections: 400
upstreams:
  slow: { url: "http://127.0.0.1:${slowUpstream.port}", max_connections: 2, max_queue: 1, queue_timeout: 300ms }
  capped: { url: "http://127.0.0.1:${slowUpstream.port}", max_connections: 2, max_queue: 100, queue_timeout: 2s }
routes:
  - { id: r, match: { path: /* }, upstream: slow, auth: public }
  - { id: c, match: { path: /cap/* }, upstream: capped, auth: public }
`)
})
afterAll(async () => {
  for (const answer of slowUpstream.held.splice(0)) answer()
  await g.close()
  slowUpstream.closeAllConnections()
  await new Promise((r) => slowUpstream.close(r))
})

describe('slow and silent clients', () => {
  it('a connection that sends nothing is closed after header_timeout', async () => {
    const c = await rawConnect(g.url)
    const ms = await c.closed
    expect(ms).toBeGreaterThanOrEqual(450)
    expect(ms).toBeLessThan(2500)
  })

  it('headers trickled byte by byte are cut at header_timeout', async () => {
    const c = await rawConnect(g.url)
    const line = 'GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ' + 'a'.repeat(100)
    let i = 0
    const timer = setInterval(() => c.write(line[i++ % line.length]!), 50)
    const ms = await c.closed
    clearInterval(timer)
    expect(ms).toBeLessThan(2500)
  })

  it('a body that stops arriving is cut after body_idle_timeout (408 when nothing was answered yet)', async () => {
    const c = await rawConnect(g.url)
    c.write('POST /r HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\n' + 'x'.repeat(10))
    const ms = await c.closed
    expect(ms).toBeGreaterThanOrEqual(350)
    expect(ms).toBeLessThan(1400)
  })

  it('a body trickled forever (never idle) is cut at request_timeout', async () => {
    const c = await rawConnect(g.url)
    c.write('POST /r HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n')
    const timer = setInterval(() => c.write('x'), 100)
    const ms = await c.closed
    clearInterval(timer)
    expect(ms).toBeGreaterThanOrEqual(1000)
    expect(ms).toBeLessThan(3500)
  })

  it('an idle kept-alive connection is closed after keep_alive_timeout', async () => {
    const c = await rawConnect(g.url)
    c.write('GET /x HTTP/1.1\r\nHost: x\r\n\r\n')
    await c.until(/HTTP\/1\.1 200/)
    const start = Date.now()
    await c.closed
    expect(Date.now() - start).toBeLessThan(1500)
  })

  it('slow senders hold no upstream connection: normal requests to the same upstream keep flowing', async () => {
    // 300 clients with small bodies arriving slowly (the review's number), against an upstream capped at 2 connections.
    const slow = await Promise.all(Array.from({ length: 300 }, () => rawConnect(g.url)))
    for (const c of slow) c.write('POST /cap/slow HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 50\r\n\r\nx')
    const trickle = setInterval(() => slow.forEach((c) => c.write('y')), 200)
    try {
      await sleep(100)
      const started = Date.now()
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => send(g.url, { path: `/cap/normal/${i}` })))
      expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200))
      expect(Date.now() - started).toBeLessThan(1000)
    } finally {
      clearInterval(trickle)
      for (const c of slow) c.destroy()
    }
  })
})

describe("an upstream's connections", () => {
  it('are capped, with a bounded queue and a bounded wait: past them, 503 with Retry-After', async () => {
    const inFlight = [send(g.url, { path: '/hold/1' }), send(g.url, { path: '/hold/2' })]
    // Both held by the upstream (however long a busy machine takes to get them there).
    for (const end = Date.now() + 5000; slowUpstream.held.length < 2 && Date.now() < end; ) await sleep(10)
    expect(slowUpstream.held.length).toBe(2)
    const queued = send(g.url, { path: '/hold/3' }) // waits in the queue (1 place)
    await sleep(100) // in the queue (its timeout, 300ms, is still to come)
    const overflow = await send(g.url, { path: '/hold/4' }) // no place in the queue: at once
    expect(overflow.status).toBe(503)
    expect(overflow.headers['retry-after']).toBe('1')
    expect((await g.requestLog(overflow.headers['x-request-id'])).reason).toBe('upstream_saturated')
    const timedOut = await queued // queue_timeout 300ms passes with both connections held
    expect(timedOut.status).toBe(503)
    for (const answer of slowUpstream.held.splice(0)) answer()
    expect((await Promise.all(inFlight)).map((r) => r.status)).toEqual([200, 200])
    expect((await send(g.url, { path: '/after' })).status).toBe(200)
  })
})

describe('a listener', () => {
  it('holds at most max_connections client connections', async () => {
    const conns = await Promise.all(Array.from({ length: 400 }, () => rawConnect(g.url)))
    const extra = await rawConnect(g.url)
    expect(await extra.closed).toBeLessThan(400)
    for (const c of conns) c.destroy()
  })
})
