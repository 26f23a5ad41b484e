import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { collectorPlan, usableCpus } from '../../src/collector.js'

/** A file system of the given files only. */
const files =
  (contents: Record<string, string>) =>
  (path: string): string | undefined =>
    contents[path]

describe('collector plan', () => {
  const both = { runtime: ['--heap-growing-percent=30'], start: ['--single-threaded-gc'] }
  const growth = { runtime: ['--heap-growing-percent=30'], start: [] }
  it('bounds heap growth, and asks for a collector on the event loop alone with one CPU or less per process', () => {
    expect(collectorPlan(1, 1, [])).toEqual(both)
    expect(collectorPlan(0.5, 1, [])).toEqual(both)
    expect(collectorPlan(4, 4, [])).toEqual(both)
    expect(collectorPlan(4, 8, [])).toEqual(both)
    expect(collectorPlan(2, 1, [])).toEqual(growth)
    expect(collectorPlan(1.5, 1, [])).toEqual(growth)
    expect(collectorPlan(8, 2, [])).toEqual(growth)
  })

  it('keeps what node was given, in either spelling', () => {
    expect(collectorPlan(1, 1, ['--heap-growing-percent=50'])).toEqual({ runtime: [], start: ['--single-threaded-gc'] })
    for (const given of ['--no-single-threaded-gc', '--single-threaded-gc', '--concurrent-marking', '--no-parallel-scavenge', '--v8-pool-size=2', '--parallel-marking']) {
      expect(collectorPlan(1, 1, [given]), given).toEqual(growth)
    }
    // Not collector flags: no effect.
    expect(collectorPlan(1, 1, ['--max-old-space-size=512', '--single-threaded'])).toEqual(both)
  })
})

describe('usable CPUs', () => {
  it('is the affinity without a quota (none, "max", -1, unreadable)', () => {
    expect(usableCpus(files({}), 6)).toBe(6)
    expect(usableCpus(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': 'max 100000\n' }), 6)).toBe(6)
    expect(usableCpus(files({ '/proc/self/cgroup': '4:cpu,cpuacct:/\n', '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' }), 6)).toBe(6)
    expect(usableCpus(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': 'garbage\n' }), 6)).toBe(6)
  })

  it('reads a cgroup v2 quota, the least on the way up from its own cgroup', () => {
    expect(usableCpus(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '100000 100000\n' }), 8)).toBe(1)
    expect(usableCpus(files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '50000 100000\n' }), 8)).toBe(0.5)
    const nested = {
      '/proc/self/cgroup': '0::/kubepods.slice/pod1/ctr\n',
      '/sys/fs/cgroup/kubepods.slice/pod1/ctr/cpu.max': 'max 100000\n',
      '/sys/fs/cgroup/kubepods.slice/pod1/cpu.max': '150000 100000\n',
      '/sys/fs/cgroup/kubepods.slice/cpu.max': '400000 100000\n',
    }
    expect(usableCpus(files(nested), 8)).toBe(1.5)
    // The affinity when it is less.
    expect(usableCpus(files(nested), 1)).toBe(1)
  })

  it('reads a cgroup v1 quota, also on a hybrid host whose v2 hierarchy has no cpu controller', () => {
    const v1 = { '/sys/fs/cgroup/cpu/docker/abc/cpu.cfs_quota_us': '200000\n', '/sys/fs/cgroup/cpu/docker/abc/cpu.cfs_period_us': '100000\n' }
    expect(usableCpus(files({ '/proc/self/cgroup': '12:cpu,cpuacct:/docker/abc\n', ...v1 }), 8)).toBe(2)
    expect(usableCpus(files({ '/proc/self/cgroup': '3:cpuacct,cpu:/docker/abc\n0::/\n', ...v1 }), 8)).toBe(2)
    expect(usableCpus(files({ '/proc/self/cgroup': '1:cpu:/\n0::/\n', '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '100000', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' }), 8)).toBe(1)
    // cpuset is not cpu.
    expect(usableCpus(files({ '/proc/self/cgroup': '5:cpuset:/x\n', '/sys/fs/cgroup/cpu/x/cpu.cfs_quota_us': '100000', '/sys/fs/cgroup/cpu/x/cpu.cfs_period_us': '100000' }), 8)).toBe(8)
  })

  it("reads this machine's files without failing", () => {
    const cpus = usableCpus()
    expect(cpus).toBeGreaterThan(0)
    expect(cpus).toBeLessThanOrEqual(availableParallelism())
  })
})

// A gateway on one pinned core compiles the sources first (tsx): slow on a cold cache.
describe('the serving process', { timeout: 90_000 }, () => {
  // Through the CLI: a process on one core runs its collector on the event loop alone.
  const config = join(mkdtempSync(join(tmpdir(), 'gw-collector-')), 'gateway.yaml')
  writeFileSync(config, 'server: { listen: "127.0.0.1:0" }\nadmin: { listen: "127.0.0.1:0" }\nupstreams: { up: { url: "http://127.0.0.1:9" } }\nroutes:\n  - { id: pub, match: { path: /x }, upstream: up, auth: public }\n')
  const children: Array<{ kill: (signal: NodeJS.Signals) => boolean }> = []
  afterAll(() => children.forEach((c) => c.kill('SIGKILL')))
  const started = (args: string[]) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const child = spawn(args[0]!, [...args.slice(1), 'test/helpers/cli-entry.ts', 'start', '--config', config], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, GATEWAY_PROCESSES: '64' } })
      children.push(child)
      let text = ''
      child.stdout.on('data', (c: Buffer) => {
        text += c.toString('utf8')
        const line = text.split('\n').slice(0, -1).find((l) => l.includes('"missing":')) // complete lines only
        if (line) {
          child.kill('SIGKILL')
          resolve(JSON.parse(line) as Record<string, unknown>)
        }
      })
      child.on('exit', () => reject(new Error(`no collector line in: ${text}`)))
    })

  it('on one pinned core: asks for a single-threaded collector, a process of its own (a variable outside a cluster does not count)', async () => {
    const line = await started(['taskset', '-c', '0', process.execPath, '--import', 'tsx'])
    expect(line).toMatchObject({ level: 'warn', cpus: 1, processes: 1, set: ['--heap-growing-percent=30'], missing: ['--single-threaded-gc'] })
    expect(line.msg).toContain('start node with --single-threaded-gc')
  })

  it('on one pinned core, started with it: nothing missing', async () => {
    const line = await started(['taskset', '-c', '0', process.execPath, '--single-threaded-gc', '--import', 'tsx'])
    expect(line).toMatchObject({ level: 'info', cpus: 1, set: ['--heap-growing-percent=30'], missing: [] })
  })

  it('given collector flags: keeps them', async () => {
    const line = await started(['taskset', '-c', '0', process.execPath, '--import', 'tsx', '--no-single-threaded-gc', '--heap-growing-percent=50'])
    expect(line).toMatchObject({ level: 'info', cpus: 1, set: [], missing: [] })
  })
})
