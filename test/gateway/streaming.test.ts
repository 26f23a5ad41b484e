import { request as httpRequest } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { listen, type Listening } from '../helpers/servers.js'

// Server-sent events and other long answers: each chunk is relayed as it
// comes (the client reads the first event while the upstream is still
// writing), a stream route outlives the upstream's timeout between chunks
// it allows, a normal route still times out, and max_duration ends a stream.

let upstream: Listening
let g: TestGateway

beforeAll(async () => {
  upstream = await listen((req, res) => {
    const every = Number(new URL(req.url!, 'http://x').searchParams.get('every') ?? '100')
    const count = Number(new URL(req.url!, 'http://x').searchParams.get('count') ?? '5')
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    res.flushHeaders()
    let n = 0
    const timer = setInterval(() => {
      res.write(`id: ${n}\ndata: event ${n}\n\n`)
      if (++n === count) {
        clearInterval(timer)
        res.end()
      }
    }, every)
    res.on('close', () => clearInterval(timer))
  })
  g = await startGateway(`
upstreams:
  events: { url: "${upstream.url}", timeout: 500ms }
routes:
  - id: live
    match: { path: /live/* }
    upstream: events
    auth: public
    stream: { idle_timeout: 5s, max_duration: 4s }
  - id: plain
    match: { path: /plain/* }
    upstream: events
    auth: public
`)
})
afterAll(async () => {
  await g.close()
  await upstream.close()
})

/** Reads an answer, noting when each chunk arrived (ms after the request). */
function read(path: string): Promise<{ status: number; chunks: Array<{ at: number; text: string }>; complete: boolean }> {
  const started = Date.now()
  return new Promise((resolve) => {
    const chunks: Array<{ at: number; text: string }> = []
    let status: number | undefined
    httpRequest(`${g.url}${path}`, (res) => {
      status = res.statusCode!
      res.on('data', (c: Buffer) => chunks.push({ at: Date.now() - started, text: c.toString() }))
      res.on('end', () => resolve({ status: res.statusCode!, chunks, complete: res.complete }))
      res.on('error', () => undefined)
      res.on('close', () => resolve({ status: res.statusCode!, chunks, complete: res.complete }))
    })
      // Cut mid-answer: the head came, the rest did not.
      .on('error', () => resolve({ status: status ?? 0, chunks, complete: false }))
      .end()
  })
}

describe('long answers', () => {
  it('relays each event as it comes, not at the end; the head first, at once', async () => {
    const { status, chunks } = await read('/live/x?every=200&count=5')
    expect(status).toBe(200)
    const head = await new Promise<number>((resolve) => {
      const started = Date.now()
      httpRequest(`${g.url}/plain/x?every=400&count=1`, (res) => {
        resolve(Date.now() - started)
        res.resume()
      }).end()
    })
    expect(head).toBeLessThan(300) // an event-stream head is not held until the first event
    const first = chunks.find((c) => c.text.includes('event 0'))!
    const last = chunks.find((c) => c.text.includes('event 4'))!
    expect(last.at - first.at).toBeGreaterThan(600)
  })

  it('a stream route waits between chunks as long as it allows; a plain route times out (the upstream timeout, 500 ms)', async () => {
    const slow = await read('/live/x?every=1500&count=2')
    expect(slow.status).toBe(200)
    expect(slow.chunks.map((c) => c.text).join('')).toContain('event 1')
    expect(slow.complete).toBe(true)
    const plain = await read('/plain/x?every=2000&count=2')
    // The head came in time (200), then the silence between chunks ended it, incomplete.
    expect(plain.complete).toBe(false)
  })

  it('max_duration ends a stream that goes on (the client sees a complete answer, and reconnects)', async () => {
    const started = Date.now()
    const long = await read('/live/x?every=200&count=1000')
    expect(Date.now() - started).toBeGreaterThanOrEqual(3900)
    expect(Date.now() - started).toBeLessThan(6000)
    expect(long.complete).toBe(true)
    expect(long.chunks.map((c) => c.text).join('')).toContain('event 10')
  })
})
