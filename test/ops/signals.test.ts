import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from '../helpers/redis.js'
import { listen, send, type Listening } from '../helpers/servers.js'

// The real process: SIGTERM drains (requests in flight finish, new
// connections are refused, exit 0); SIGHUP re-reads the configuration.

let slow: Listening

beforeAll(async () => {
  slow = await listen((req, res) => {
    const ms = Number(new URL(req.url!, 'http://x').searchParams.get('ms') ?? '0')
    setTimeout(() => res.end(`done after ${ms}`), ms)
  })
})
afterAll(() => slow.close())

interface Proc {
  child: ChildProcess
  url: string
  file: string
  output: () => string
  exited: Promise<number | null>
}

async function spawnGateway(drain: string, extraRoute = ''): Promise<Proc> {
  const dir = await mkdtemp(join(tmpdir(), 'gw-proc-'))
  const file = join(dir, 'gateway.yaml')
  const port = await freePort()
  const yaml = (extra: string) => `
server: { listen: "127.0.0.1:${port}", drain_timeout: ${drain} }
admin: { listen: "127.0.0.1:0" }
upstreams: { slow: { url: "${slow.url}" } }
routes:
  - { id: s, match: { path: /s }, upstream: slow, auth: public }
${extra}`
  await writeFile(file, yaml(extraRoute))
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/cli-entry.ts', 'start', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'info' } })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()))
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  const end = Date.now() + 15_000
  while (!out.includes('gateway listening')) {
    if (Date.now() > end) throw new Error(`gateway did not start:\n${out}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  return { child, url: `http://127.0.0.1:${port}`, file, output: () => out, exited }
}

describe('signals', () => {
  it('SIGTERM: in-flight requests finish, new connections are refused, exit 0', async () => {
    const p = await spawnGateway('5s')
    const inFlight = send(p.url, { path: '/s?ms=1200' })
    await new Promise((r) => setTimeout(r, 200))
    p.child.kill('SIGTERM')
    await new Promise((r) => setTimeout(r, 200))
    await expect(send(p.url, { path: '/s?ms=0' })).rejects.toThrow(/ECONNREFUSED/)
    const res = await inFlight
    expect(res.status).toBe(200)
    expect(res.body).toBe('done after 1200')
    expect(await p.exited).toBe(0)
    expect(p.output()).toContain('"msg":"stopped"')
  })

  it('SIGTERM with idle kept-alive clients: exits as soon as the last request ends; a request on an open connection is answered with Connection: close', async () => {
    const p = await spawnGateway('10s')
    const { rawConnect } = await import('../helpers/raw.js')
    // Five kept-alive connections, idle after one request each.
    const idle = await Promise.all(Array.from({ length: 5 }, () => rawConnect(p.url)))
    for (const c of idle) c.write('GET /s?ms=0 HTTP/1.1\r\nHost: x\r\n\r\n')
    await Promise.all(idle.map((c) => c.until(/done after 0/)))
    // One request in flight, and one whose head is only half sent.
    const inFlight = send(p.url, { path: '/s?ms=800' })
    const half = await rawConnect(p.url)
    half.write('GET /s?ms=100 HTTP/1.1\r\nHost: x\r\n')
    await new Promise((r) => setTimeout(r, 200))
    const signalled = Date.now()
    p.child.kill('SIGTERM')
    await new Promise((r) => setTimeout(r, 100))
    half.write('\r\n')
    const answer = await half.until(/done after 100/)
    expect(answer).toMatch(/^HTTP\/1\.1 200/)
    expect(answer.toLowerCase()).toContain('connection: close')
    // Idle connections were closed at once.
    for (const c of idle) expect(await c.closed).toBeGreaterThan(0)
    expect((await inFlight).status).toBe(200)
    expect(await p.exited).toBe(0)
    // Well before the 10 s deadline: as soon as the last request ended.
    expect(Date.now() - signalled).toBeLessThan(3000)
  })

  it('SIGTERM: the drain deadline bounds the wait', async () => {
    const p = await spawnGateway('300ms')
    const inFlight = send(p.url, { path: '/s?ms=5000' }).catch((err: Error) => err)
    await new Promise((r) => setTimeout(r, 200))
    const started = Date.now()
    p.child.kill('SIGTERM')
    expect(await p.exited).toBe(0)
    expect(Date.now() - started).toBeLessThan(3000)
    expect(p.output()).toContain('drain deadline reached')
    await inFlight
  })

  it('SIGHUP re-reads the configuration', async () => {
    const p = await spawnGateway('1s')
    try {
      expect((await send(p.url, { path: '/t' })).status).toBe(404)
      const text = (await import('node:fs')).readFileSync(p.file, 'utf8')
      await writeFile(p.file, text + '  - { id: t, match: { path: /t }, upstream: slow, auth: public }\n')
      p.child.kill('SIGHUP')
      const end = Date.now() + 8000
      while ((await send(p.url, { path: '/t' })).status !== 200) {
        if (Date.now() > end) throw new Error(`not reloaded:\n${p.output()}`)
        await new Promise((r) => setTimeout(r, 50))
      }
    } finally {
      p.child.kill('SIGTERM')
      await p.exited
    }
  })
})
