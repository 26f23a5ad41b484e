import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'

/** One Redis node's address. */
export interface RedisNode {
  readonly host: string
  readonly port: number
}

/**
 * Where the replicas' shared state lives: one server (by URL), a master
 * found through Sentinel, or a Cluster. Every use of Redis in the gateway
 * (token cache, revocations, rate limits) connects through `connectRedis`,
 * so each works on all three.
 */
export type RedisTopology =
  | { readonly kind: 'standalone'; readonly url: string }
  | {
      readonly kind: 'sentinel'
      readonly masterName: string
      readonly sentinels: readonly RedisNode[]
      readonly username: string | undefined
      readonly password: string | undefined
      readonly sentinelUsername: string | undefined
      readonly sentinelPassword: string | undefined
      readonly db: number
      readonly tls: boolean
    }
  | {
      readonly kind: 'cluster'
      readonly nodes: readonly RedisNode[]
      readonly username: string | undefined
      readonly password: string | undefined
      readonly tls: boolean
    }

/** A connection to any topology: ioredis's Redis and Cluster share the command API. */
export type RedisClient = Redis | Cluster

/** Reconnection backoff: 50 ms, doubling, at most 2 s between attempts, forever. */
export function reconnectDelay(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt, 6), 2000)
}

export interface ConnectOptions {
  /** Longest wait for one command (none: no limit). */
  readonly commandTimeoutMs?: number | undefined
  /** Commands issued while disconnected wait for the connection (subscribers) instead of failing at once. */
  readonly queueWhileDisconnected?: boolean
  /** Commands issued in the same tick leave in one write (many concurrent requests, one round trip). */
  readonly autoPipelining?: boolean
}

/**
 * Connects to the topology. Commands never wait for a reconnection unless
 * asked (a request must not hang on a Redis that is away); the client
 * reconnects on its own, forever. With Sentinel, a failover is followed at
 * once (the sentinels' +switch-master, and a READONLY answer from a demoted
 * master, both reconnect to the new master). With Cluster, MOVED and ASK
 * redirections during a slot migration are followed, and the slot map is
 * refreshed.
 */
export function connectRedis(topology: RedisTopology, options: ConnectOptions = {}): RedisClient {
  const timeout = options.commandTimeoutMs
  const common: RedisOptions = {
    ...(timeout !== undefined ? { commandTimeout: timeout } : {}),
    connectTimeout: Math.max((timeout ?? 200) * 10, 1000),
    enableOfflineQueue: options.queueWhileDisconnected ?? false,
    maxRetriesPerRequest: options.queueWhileDisconnected ? null : 0,
    retryStrategy: reconnectDelay,
    enableAutoPipelining: options.autoPipelining ?? false,
    // A master demoted by a failover answers writes with READONLY: find the new one.
    reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 1 : false),
  }
  switch (topology.kind) {
    case 'standalone':
      return new Redis(topology.url, common)
    case 'sentinel':
      return new Redis({
        ...common,
        sentinels: topology.sentinels.map((n) => ({ host: n.host, port: n.port })),
        name: topology.masterName,
        ...(topology.username !== undefined ? { username: topology.username } : {}),
        ...(topology.password !== undefined ? { password: topology.password } : {}),
        ...(topology.sentinelUsername !== undefined ? { sentinelUsername: topology.sentinelUsername } : {}),
        ...(topology.sentinelPassword !== undefined ? { sentinelPassword: topology.sentinelPassword } : {}),
        db: topology.db,
        ...(topology.tls ? { tls: {}, enableTLSForSentinelMode: true } : {}),
        sentinelRetryStrategy: reconnectDelay,
        failoverDetector: true,
      })
    case 'cluster': {
      const redisOptions: RedisOptions = {
        ...common,
        ...(topology.username !== undefined ? { username: topology.username } : {}),
        ...(topology.password !== undefined ? { password: topology.password } : {}),
        ...(topology.tls ? { tls: {} } : {}),
      }
      const clusterOptions: ClusterOptions = {
        redisOptions,
        enableOfflineQueue: options.queueWhileDisconnected ?? false,
        enableAutoPipelining: options.autoPipelining ?? false,
        clusterRetryStrategy: reconnectDelay,
        // Redirections are followed at once; a slot in migration answers ASK, then MOVED once it is done.
        retryDelayOnMoved: 0,
        retryDelayOnTryAgain: 20,
        retryDelayOnClusterDown: 100,
        maxRedirections: 16,
        slotsRefreshTimeout: Math.max((timeout ?? 200) * 10, 1000),
        scaleReads: 'master',
      }
      return new Cluster(
        topology.nodes.map((n) => ({ host: n.host, port: n.port })),
        clusterOptions,
      )
    }
  }
}

/** Whether the client can take commands now. */
export function isReady(client: RedisClient): boolean {
  return client.status === 'ready'
}

/**
 * Every key matching a pattern, on every master (SCAN runs per node: a
 * Cluster spreads keys over its masters). Yields keys in batches.
 */
export async function* scanKeys(client: RedisClient, pattern: string, count = 1000): AsyncGenerator<string[]> {
  if (client instanceof Cluster && client.status !== 'ready') await whenReady(client, 5000)
  const nodes: Redis[] = client instanceof Cluster ? client.nodes('master') : [client]
  for (const node of nodes) {
    let cursor = '0'
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', count)
      cursor = next
      if (keys.length > 0) yield keys
    } while (cursor !== '0')
  }
}

/** Resolves once the client is ready; rejects after `ms`. */
export function whenReady(client: RedisClient, ms: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('ready', ready)
      reject(new Error('Redis was not ready in time'))
    }, ms)
    const ready = () => {
      clearTimeout(timer)
      resolve()
    }
    client.once('ready', ready)
  })
}

/** Values of keys, in order; keys on different Cluster slots are read one by one (MGET needs one slot). */
export async function getMany(client: RedisClient, keys: readonly string[]): Promise<(string | null)[]> {
  if (!(client instanceof Cluster)) return client.mget(...keys)
  return Promise.all(keys.map((k) => client.get(k)))
}

/** Closes the connection; never waits more than a second on a Redis that does not answer. */
export async function closeRedis(client: RedisClient): Promise<void> {
  if (client.status !== 'ready') {
    client.disconnect()
    return
  }
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([client.quit(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('quit timed out')), 1000)))])
  } catch {
    client.disconnect()
  } finally {
    clearTimeout(timer)
  }
}
