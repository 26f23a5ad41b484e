import { readFileSync } from 'node:fs'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { collectorPlan, usableCpus } from '../../src/collector.js'
import { freePort } from '../helpers/redis.js'
import { spawnGateway } from '../helpers/running.js'
import { send, startEchoUpstream, type Echoed, type Listening } from '../helpers/servers.js'

// server.workers: several processes on one port, the primary serving the
// admin listener with metrics summed over the workers.

let upstream: Listening & { received: Echoed[] }
beforeAll(async () => {
  upstream = await startEchoUpstream()
})
afterAll(() => upstream.close())

describe('workers', () => {
  it('serves from every worker, aggregates metrics and readiness, drains on SIGTERM', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gw-workers-'))
    const file = join(dir, 'gateway.yaml')
    const [port, adminPort] = [await freePort(), await freePort()]
    await writeFile(
      file,
      `server: { listen: "127.0.0.1:${port}", workers: 2, drain_timeout: 2s }
admin: { listen: "127.0.0.1:${adminPort}" }
upstreams: { api: { url: "${upstream.url}" } }
routes: [{ id: r, match: { path: /r }, upstream: api, auth: public }]
`,
    )
    const gateway = await spawnGateway(file, { listening: 2 })
    try {
      const url = `http://127.0.0.1:${port}`
      const results = await Promise.all(Array.from({ length: 60 }, () => send(url, { path: '/r' })))
      expect(results.every((r) => r.status === 200)).toBe(true)
      await new Promise((r) => setTimeout(r, 200))
      const servedBy = new Set(gateway.output().split('\n').filter((l) => l.includes('"msg":"request"')).map((l) => (JSON.parse(l) as { worker: number }).worker))
      expect(servedBy).toEqual(new Set([1, 2]))
      const admin = `http://127.0.0.1:${adminPort}`
      const metrics = (await send(admin, { path: '/metrics' })).body
      const line = metrics.split('\n').find((l) => l.startsWith('gateway_requests_total{') && l.includes('route="r"'))
      expect(Number(line?.split(' ').at(-1))).toBe(60)
      const ready = await send(admin, { path: '/readyz' })
      expect(ready.status).toBe(200)
      expect(ready.json<{ status: string; workers: unknown[] }>()).toMatchObject({ status: 'ready' })
      expect(ready.json<{ workers: unknown[] }>().workers).toHaveLength(2)

      // A worker killed: scrapes keep answering promptly, and the summed counters never go down.
      const total = async () => {
        const res = await send(admin, { path: '/metrics' })
        expect(res.status).toBe(200)
        const l = res.body.split('\n').find((x) => x.startsWith('gateway_requests_total{') && x.includes('route="r"'))
        return Number(l?.split(' ').at(-1) ?? 0)
      }
      const pids = [...new Set(gateway.output().split('\n').filter((l) => l.includes('"msg":"gateway listening"')).map((l) => (JSON.parse(l) as { pid: number }).pid))]
      // Each worker starts with the collector its share of the CPUs asks for (collector.ts), and says so.
      const share = collectorPlan(usableCpus(), 2, []).start
      for (const pid of pids) {
        const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
        for (const flag of ['--single-threaded-gc']) expect(argv.includes(flag), `${pid}: ${argv.join(' ')}`).toBe(share.includes(flag))
      }
      const collectors = gateway.output().split('\n').filter((l) => l.includes('"missing":')).map((l) => JSON.parse(l) as { worker?: number; processes: number; missing: string[] })
      expect(collectors.filter((c) => c.worker !== undefined).map((c) => [c.processes, c.missing])).toEqual([[2, []], [2, []]])
      process.kill(pids[0]!, 'SIGKILL')
      let last = 60
      const deadline = Date.now() + 4000
      while (Date.now() < deadline) {
        const started = Date.now()
        const now = await total()
        expect(Date.now() - started).toBeLessThan(1500)
        expect(now).toBeGreaterThanOrEqual(last)
        last = now
        await send(url, { path: '/r' }).catch(() => undefined)
      }
      expect(last).toBeGreaterThan(60)
    } finally {
      gateway.signal('SIGTERM')
    }
    expect(await gateway.exited).toBe(0)
    expect(gateway.output()).toContain('"msg":"stopped"')
  })
})
