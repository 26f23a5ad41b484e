import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LOG_OPTIONS } from '../../src/logger.js'
import { LISTEN_ANY, startServer, type Running } from '../helpers/running.js'
import { send, startEchoUpstream, type Listening } from '../helpers/servers.js'

// What an on-call operator reads: text levels and ISO times, one request line
// with who, what, the decision and the bytes; a dependency failure as a line
// with its cause (no stack); probes not logged; secrets never in a field.

let upstream: Listening
let running: Running
beforeAll(async () => {
  upstream = await startEchoUpstream()
  running = await startServer(`${LISTEN_ANY}
upstreams: { api: { url: "${upstream.url}" }, dead: { url: "http://127.0.0.1:1" } }
routes:
  - { id: a, match: { path: /a }, upstream: api, auth: public }
  - { id: dead, match: { path: /dead }, upstream: dead, auth: public }
`)
})
afterAll(async () => {
  await running.drain()
  await upstream.close()
})

describe('logs', () => {
  it('request lines have a text level, an ISO time, the client address, the decision and the bytes', async () => {
    const res = await send(running.url, { method: 'POST', path: '/a', headers: [['Content-Type', 'text/plain']], body: 'x'.repeat(100) })
    await new Promise((r) => setTimeout(r, 50))
    const line = running.logs.find((l) => l.msg === 'request' && l.reqId === res.headers['x-request-id'])!
    expect(line).toMatchObject({ level: 'info', route: 'a', status: 200, decision: 'allow', ip: '127.0.0.1', bytes_in: 100 })
    expect(line.bytes_out).toBe(Number(res.headers['content-length']))
    expect(String(line.time)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  })

  it('an upstream failure is one line with its cause, no stack', async () => {
    const res = await send(running.url, { path: '/dead' })
    expect(res.status).toBe(502)
    await new Promise((r) => setTimeout(r, 50))
    const failed = running.logs.find((l) => l.msg === 'request failed' && l.reqId === res.headers['x-request-id'])!
    expect(failed).toMatchObject({ level: 'warn', code: 'upstream_unavailable' })
    expect(String(failed.cause)).toContain('ECONNREFUSED')
    expect(failed.err).toBeUndefined()
    expect(JSON.stringify(failed).length).toBeLessThan(400)
  })

  it('probes and scrapes of the admin listener are not logged', async () => {
    const before = running.logs.length
    for (const path of ['/healthz', '/readyz', '/metrics']) expect((await send(running.adminUrl, { path })).status).toBe(200)
    await new Promise((r) => setTimeout(r, 50))
    expect(running.logs.slice(before)).toEqual([])
  })

  it('secrets in structured fields are redacted wherever they appear', () => {
    const lines: string[] = []
    const logger = pino({ ...LOG_OPTIONS }, { write: (l: string) => void lines.push(l) })
    logger.warn({ headers: { authorization: 'Bearer abc.def.ghi', cookie: 's=1' }, req: { headers: { authorization: 'Basic x' } }, access_token: 't', client_secret: 'c', body: { password: 'p' } }, 'x')
    const text = lines.join('')
    for (const secret of ['abc.def.ghi', 's=1', 'Basic x', '"t"', '"c"', '"p"']) expect(text).not.toContain(secret)
    expect(text).toContain('[redacted]')
  })
})
