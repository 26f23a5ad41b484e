import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { freePort } from './redis.js'

const run = promisify(execFile)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function until<T>(what: () => Promise<T | undefined | false>, ms: number, why: string): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    try {
      const v = await what()
      if (v) return v
    } catch {
      // not yet
    }
    if (Date.now() > end) throw new Error(`timed out: ${why}`)
    await sleep(50)
  }
}

/** A short-lived connection to one node. */
async function withNode<T>(port: number, use: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  r.on('error', () => undefined)
  try {
    await r.connect()
    return await use(r)
  } finally {
    r.disconnect()
  }
}

class Processes {
  private readonly children: ChildProcess[] = []
  constructor(readonly dir: string) {}

  start(args: string[]): ChildProcess {
    const child = spawn('redis-server', args, { stdio: 'ignore', cwd: this.dir })
    this.children.push(child)
    return child
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve()
            c.once('exit', () => resolve())
            c.kill('SIGKILL')
          }),
      ),
    )
    await rm(this.dir, { recursive: true, force: true })
  }
}

const SERVER = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']

/**
 * A master, its replicas (one by default) and three sentinels on loopback (real redis-server
 * processes on free ports), for failover tests.
 */
export class SentinelSet {
  private constructor(
    private readonly procs: Processes,
    readonly masterName: string,
    readonly dataPorts: readonly number[],
    readonly sentinelPorts: readonly number[],
    private readonly data: ReadonlyMap<number, ChildProcess>,
  ) {}

  /** Freezes a data node (SIGSTOP): it neither answers nor replicates. */
  pause(port: number): void {
    this.data.get(port)?.kill('SIGSTOP')
  }

  resume(port: number): void {
    this.data.get(port)?.kill('SIGCONT')
  }

  /** Kills a data node outright (SIGKILL): what it had not replicated is gone. */
  async kill(port: number): Promise<void> {
    const child = this.data.get(port)
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve())
      child.kill('SIGKILL')
    })
  }

  /** Resolves once the sentinels name a master other than `port`. */
  async masterOtherThan(port: number): Promise<number> {
    return until(async () => {
      const now = await this.masterPort()
      return now !== port ? now : undefined
    }, 30_000, 'promotion')
  }

  static async start(replicaCount = 1, masterName = 'gwmaster'): Promise<SentinelSet> {
    const procs = new Processes(await mkdtemp(join(tmpdir(), 'gw-sentinel-')))
    const master = await freePort()
    const data = new Map<number, ChildProcess>()
    data.set(master, procs.start(['--port', String(master), ...SERVER]))
    const replicas: number[] = []
    for (let i = 0; i < replicaCount; i++) {
      const replica = await freePort()
      data.set(replica, procs.start(['--port', String(replica), ...SERVER, '--replicaof', '127.0.0.1', String(master)]))
      replicas.push(replica)
    }
    for (const replica of replicas) {
      await until(() => withNode(replica, async (r) => (await r.info('replication')).includes('master_link_status:up')), 10_000, 'replica in sync')
    }
    const sentinels: number[] = []
    for (let i = 0; i < 3; i++) {
      const port = await freePort()
      const file = join(procs.dir, `sentinel-${port}.conf`)
      await writeFile(
        file,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `sentinel monitor ${masterName} 127.0.0.1 ${master} 2`,
          `sentinel down-after-milliseconds ${masterName} 1000`,
          `sentinel failover-timeout ${masterName} 5000`,
          `sentinel parallel-syncs ${masterName} 1`,
          '',
        ].join('\n'),
      )
      procs.start([file, '--sentinel'])
      sentinels.push(port)
    }
    const set = new SentinelSet(procs, masterName, [master, ...replicas], sentinels, data)
    // Every sentinel knows the replica and the other sentinels before anything relies on a failover.
    for (const port of sentinels) {
      await until(
        () =>
          withNode(port, async (r) => {
            const known = (await r.call('SENTINEL', 'REPLICAS', masterName)) as unknown[]
            const peers = (await r.call('SENTINEL', 'SENTINELS', masterName)) as unknown[]
            return known.length === replicaCount && peers.length === 2
          }),
        20_000,
        'sentinels ready',
      )
    }
    return set
  }

  /** The master's port, as the sentinels see it. */
  async masterPort(): Promise<number> {
    return withNode(this.sentinelPorts[0]!, async (r) => Number(((await r.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', this.masterName)) as string[])[1]))
  }

  /** A manual failover (the replica is promoted; writes acknowledged by the old master are kept); resolves once the new master takes writes. */
  async failover(): Promise<{ from: number; to: number }> {
    const from = await this.masterPort()
    await withNode(this.sentinelPorts[0]!, (r) => r.call('SENTINEL', 'FAILOVER', this.masterName))
    const to = await until(async () => {
      const port = await this.masterPort()
      return port !== from ? port : undefined
    }, 20_000, 'failover')
    await until(() => withNode(to, async (r) => (await r.info('replication')).includes('role:master')), 10_000, 'new master')
    return { from, to }
  }

  yaml(prefix: string, extra = ''): string {
    return `cache: { redis: { sentinel: { master_name: ${this.masterName}, nodes: [${this.sentinelPorts.map((p) => `"127.0.0.1:${p}"`).join(', ')}] }, key_prefix: "${prefix}", timeout: 200ms${extra} } }`
  }

  stop(): Promise<void> {
    return this.procs.stop()
  }
}

/** A Redis Cluster of three masters on loopback, made with redis-cli --cluster create. */
export class RedisClusterSet {
  private constructor(
    private readonly procs: Processes,
    readonly ports: readonly number[],
  ) {}

  static async start(masters = 3): Promise<RedisClusterSet> {
    const procs = new Processes(await mkdtemp(join(tmpdir(), 'gw-cluster-')))
    const ports: number[] = []
    for (let i = 0; i < masters; i++) {
      const port = await freePort()
      procs.start(['--port', String(port), ...SERVER, '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '2000'])
      ports.push(port)
    }
    for (const port of ports) await until(() => withNode(port, async (r) => (await r.ping()) === 'PONG'), 10_000, 'node up')
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'])
    for (const port of ports) {
      await until(() => withNode(port, async (r) => (await r.call('CLUSTER', 'INFO') as string).includes('cluster_state:ok')), 20_000, 'cluster ok')
    }
    return new RedisClusterSet(procs, ports)
  }

  /** The node serving a slot, and its id. */
  async owner(slot: number): Promise<{ port: number; id: string }> {
    return withNode(this.ports[0]!, async (r) => {
      const slots = (await r.call('CLUSTER', 'SLOTS')) as [number, number, [string, number, string]][]
      for (const [from, to, [, port, id]] of slots) if (slot >= from && slot <= to) return { port, id }
      throw new Error(`no owner for slot ${slot}`)
    })
  }

  async keySlot(key: string): Promise<number> {
    return withNode(this.ports[0]!, async (r) => Number(await r.call('CLUSTER', 'KEYSLOT', key)))
  }

  async nodeId(port: number): Promise<string> {
    return withNode(port, async (r) => String(await r.call('CLUSTER', 'MYID')))
  }

  /**
   * Moves a slot to another master the way redis-cli --cluster reshard does
   * (IMPORTING / MIGRATING, MIGRATE of its keys, SETSLOT NODE everywhere),
   * waiting `pauseMs` in the migrating state, where clients get ASK
   * redirections, before and after the keys move.
   */
  async migrateSlot(slot: number, pauseMs: number): Promise<{ from: number; to: number }> {
    const source = await this.owner(slot)
    const targetPort = this.ports.find((p) => p !== source.port)!
    const targetId = await this.nodeId(targetPort)
    await withNode(targetPort, (r) => r.call('CLUSTER', 'SETSLOT', slot, 'IMPORTING', source.id))
    await withNode(source.port, (r) => r.call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', targetId))
    await sleep(pauseMs)
    await withNode(source.port, async (r) => {
      for (;;) {
        const keys = (await r.call('CLUSTER', 'GETKEYSINSLOT', slot, 100)) as string[]
        if (keys.length === 0) break
        await r.call('MIGRATE', '127.0.0.1', targetPort, '', 0, 5000, 'KEYS', ...keys)
      }
    })
    await sleep(pauseMs)
    for (const port of [targetPort, source.port, ...this.ports.filter((p) => p !== targetPort && p !== source.port)]) {
      await withNode(port, (r) => r.call('CLUSTER', 'SETSLOT', slot, 'NODE', targetId))
    }
    return { from: source.port, to: targetPort }
  }

  /** Every key under a prefix, on every master. */
  async keys(pattern: string): Promise<string[]> {
    const out: string[] = []
    for (const port of this.ports) out.push(...(await withNode(port, (r) => r.keys(pattern))))
    return out
  }

  yaml(prefix: string, extra = ''): string {
    return `cache: { redis: { cluster: { nodes: [${this.ports.map((p) => `"127.0.0.1:${p}"`).join(', ')}] }, key_prefix: "${prefix}", timeout: 200ms${extra} } }`
  }

  stop(): Promise<void> {
    return this.procs.stop()
  }
}
