import { spawn } from 'node:child_process'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

// A listener that cannot be opened stops `gateway start` with one line that
// says which address and why, exit code 1: never a stack trace, never a
// gateway half started (its other listener left open, Redis connected).

let held: Server
let heldPort: number
beforeAll(async () => {
  held = createServer()
  await new Promise<void>((resolve) => held.listen(0, '127.0.0.1', resolve))
  heldPort = (held.address() as { port: number }).port
})
afterAll(() => new Promise<void>((resolve) => held.close(() => resolve())))

async function start(server: string, admin: string, workers = 1): Promise<{ code: number | null; output: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'gw-listen-'))
  const file = join(dir, 'gateway.yaml')
  await writeFile(
    file,
    `server: { listen: "${server}", workers: ${workers} }
admin: { listen: "${admin}" }
upstreams: { up: { url: "http://127.0.0.1:9" } }
routes:
  - { id: pub, match: { path: /x }, upstream: up, auth: public }
`,
  )
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/cli-entry.ts', 'start', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (d: Buffer) => (output += d.toString()))
  child.stderr.on('data', (d: Buffer) => (output += d.toString()))
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  return { code, output }
}

function expectOneLine(output: string, line: string): void {
  expect(output).toContain(line)
  expect(output).not.toMatch(/^\s+at /m)
  expect(output).not.toContain('EADDRINUSE')
}

describe('gateway start, when a listener cannot be opened', () => {
  it('a port another process holds: the proxy listener', async () => {
    const { code, output } = await start(`127.0.0.1:${heldPort}`, '127.0.0.1:0')
    expect(code).toBe(1)
    expectOneLine(output, `cannot listen on 127.0.0.1:${heldPort}: the address is already in use`)
  })

  it('a port another process holds: the admin listener, after the proxy listener opened', async () => {
    const { code, output } = await start('127.0.0.1:0', `127.0.0.1:${heldPort}`)
    expect(code).toBe(1)
    expectOneLine(output, `cannot listen on 127.0.0.1:${heldPort}: the address is already in use`)
  })

  it('the proxy and the admin listener on one port', async () => {
    const probe = createServer()
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
    const port = (probe.address() as { port: number }).port
    await new Promise<void>((resolve) => probe.close(() => resolve()))
    const { code, output } = await start(`127.0.0.1:${port}`, `127.0.0.1:${port}`)
    expect(code).toBe(1)
    expectOneLine(output, `cannot listen on 127.0.0.1:${port}: the address is already in use`)
  })

  it('an address no interface of the machine has', async () => {
    const { code, output } = await start('192.0.2.1:8080', '127.0.0.1:0')
    expect(code).toBe(1)
    expectOneLine(output, 'cannot listen on 192.0.2.1:8080: no interface of this machine has that address')
  })

  // With server.workers the port is the primary's to open: every worker fails alike. Said once,
  // the gateway stopped, never a worker started again and again.
  describe('with several workers', () => {
    const once = (output: string, line: string) => expect(output.split(line).length - 1, output).toBe(1)

    it('a port another process holds: the proxy listener', async () => {
      const started = Date.now()
      const { code, output } = await start(`127.0.0.1:${heldPort}`, '127.0.0.1:0', 2)
      expect(code).toBe(1)
      expectOneLine(output, `cannot listen on 127.0.0.1:${heldPort}: the address is already in use`)
      once(output, `cannot listen on 127.0.0.1:${heldPort}`)
      expect(output).not.toContain('worker died')
      expect(Date.now() - started).toBeLessThan(20_000)
    })

    it('a port another process holds: the admin listener, before any worker starts', async () => {
      const { code, output } = await start('127.0.0.1:0', `127.0.0.1:${heldPort}`, 2)
      expect(code).toBe(1)
      expectOneLine(output, `cannot listen on 127.0.0.1:${heldPort}: the address is already in use`)
      once(output, `cannot listen on 127.0.0.1:${heldPort}`)
      expect(output).not.toContain('gateway listening')
      expect(output).not.toContain('"worker":')
    })
  })
})
