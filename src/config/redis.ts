import { isIP } from 'node:net'
import { Type, type Static } from '@sinclair/typebox'
import type { RedisNode, RedisTopology } from '../cache/redis-client.js'
import { parseDuration } from './duration.js'
import type { FieldPath } from './errors.js'

/**
 * `cache.redis`: the Redis every replica shares (token cache, revocations,
 * rate-limit counters). One server by URL, a master found through Sentinel,
 * or a Cluster. Schema and compile step side by side; connections are made
 * in src/cache/redis-client.ts.
 */

const strict = { additionalProperties: false } as const

export const REDIS_DEFAULTS = {
  keyPrefix: 'gateway:',
  timeout: '100ms',
} as const

const NodeAddress = Type.String({
  pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$',
  description: 'host:port ([v6]:port for an IPv6 address)',
})

export const RedisSchema = Type.Object(
  {
    url: Type.Optional(Type.String({ pattern: '^rediss?://', description: 'one Redis server: redis:// or rediss:// URL (user, password and db number may be included)' })),
    sentinel: Type.Optional(
      Type.Object(
        {
          master_name: Type.String({ minLength: 1, description: 'the name the sentinels monitor the master under' }),
          nodes: Type.Array(NodeAddress, { minItems: 1, uniqueItems: true, description: 'the sentinels (any of them answers where the master is)' }),
          username: Type.Optional(Type.String({ minLength: 1, description: 'ACL user for the sentinels' })),
          password: Type.Optional(Type.String({ minLength: 1, description: 'password of the sentinels (from ${ENV})' })),
        },
        { ...strict, description: 'a master and its replicas watched by Redis Sentinel; a failover is followed without a restart' },
      ),
    ),
    cluster: Type.Optional(
      Type.Object(
        { nodes: Type.Array(NodeAddress, { minItems: 1, uniqueItems: true, description: 'some nodes of the cluster (the rest are discovered)' }) },
        { ...strict, description: 'a Redis Cluster; slot moves and failovers are followed without a restart' },
      ),
    ),
    username: Type.Optional(Type.String({ minLength: 1, description: 'ACL user of the data nodes (sentinel or cluster; a url carries its own)' })),
    password: Type.Optional(Type.String({ minLength: 1, description: 'password of the data nodes, from ${ENV} (sentinel or cluster; a url carries its own)' })),
    db: Type.Optional(Type.Integer({ minimum: 0, maximum: 15, description: 'database number (sentinel only: a cluster has one database, a url carries its own)' })),
    tls: Type.Optional(Type.Boolean({ default: false, description: 'TLS to every node (sentinel or cluster; a url says rediss://)' })),
    wait_replicas: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 16,
        default: 0,
        description:
          'rate-limit decisions count only once this many replicas have them (WAIT, same round trip), so that a Sentinel or Cluster failover loses none; one not acknowledged within a quarter of the timeout is handled as Redis not answering (on_redis_error), and what it took is given back',
      }),
    ),
    key_prefix: Type.Optional(Type.String({ minLength: 1, default: REDIS_DEFAULTS.keyPrefix })),
    timeout: Type.Optional(Type.String({ pattern: '^[0-9]+(ms|s|m|h)$', default: REDIS_DEFAULTS.timeout, description: 'longest wait for one Redis command before going on without it' })),
    integrity_key: Type.Optional(
      Type.String({
        minLength: 32,
        description:
          'a secret shared by the replicas (at least 32 characters, from ${ENV}); the seal of every shared value (an HMAC over the whole record, its key and its expiry) is made under it and the token, so that write access to Redis cannot forge or alter a result, not even for a token one holds',
      }),
    ),
  },
  {
    ...strict,
    description: 'the Redis shared by every replica (token cache, revocations, rate-limit counters): one of url, sentinel or cluster; without it each process keeps its own',
  },
)

export type RedisConfig = Static<typeof RedisSchema>

export interface CompiledRedis {
  readonly topology: RedisTopology
  readonly keyPrefix: string
  readonly timeoutMs: number
  /** Replicas a decision must reach before it counts (WAIT). */
  readonly waitReplicas: number
}

type Report = (path: FieldPath, message: string) => void

function node(text: string): RedisNode {
  const i = text.lastIndexOf(':')
  return { host: text.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port: Number(text.slice(i + 1)) }
}

/** Compiles `cache.redis`; undefined (with located errors) when it is not usable. */
export function compileRedis(config: RedisConfig, at: FieldPath, report: Report): CompiledRedis | undefined {
  const given = (['url', 'sentinel', 'cluster'] as const).filter((k) => config[k] !== undefined)
  if (given.length !== 1) {
    report(at, given.length === 0 ? 'name the Redis: url (one server), sentinel or cluster' : `give one of url, sentinel or cluster, not ${given.join(' and ')}`)
    return undefined
  }
  let ok = true
  const nodes = (list: readonly string[], path: FieldPath): RedisNode[] =>
    list.map((text, i) => {
      const n = node(text)
      if (!(n.port >= 1 && n.port <= 65535)) {
        ok = false
        report([...path, i], `port ${n.port} is out of range`)
      }
      if (text.startsWith('[') && isIP(n.host) !== 6) {
        ok = false
        report([...path, i], `${n.host} is not an IPv6 address`)
      }
      return n
    })
  let topology: RedisTopology
  if (config.url !== undefined) {
    for (const k of ['username', 'password', 'db', 'tls'] as const) {
      if (config[k] !== undefined) report([...at, k], `with url, put ${k === 'tls' ? 'rediss://' : k} in the URL`)
    }
    if (config.username !== undefined || config.password !== undefined || config.db !== undefined || config.tls !== undefined) return undefined
    try {
      new URL(config.url)
    } catch {
      report([...at, 'url'], 'not a valid URL')
      return undefined
    }
    topology = { kind: 'standalone', url: config.url }
  } else if (config.sentinel !== undefined) {
    topology = {
      kind: 'sentinel',
      masterName: config.sentinel.master_name,
      sentinels: nodes(config.sentinel.nodes, [...at, 'sentinel', 'nodes']),
      username: config.username,
      password: config.password,
      sentinelUsername: config.sentinel.username,
      sentinelPassword: config.sentinel.password,
      db: config.db ?? 0,
      tls: config.tls ?? false,
    }
  } else {
    if (config.db !== undefined && config.db !== 0) report([...at, 'db'], 'a cluster has database 0 only')
    topology = {
      kind: 'cluster',
      nodes: nodes(config.cluster!.nodes, [...at, 'cluster', 'nodes']),
      username: config.username,
      password: config.password,
      tls: config.tls ?? false,
    }
    if (config.db !== undefined && config.db !== 0) return undefined
  }
  if (!ok) return undefined
  return {
    topology,
    keyPrefix: config.key_prefix ?? REDIS_DEFAULTS.keyPrefix,
    timeoutMs: parseDuration(config.timeout ?? REDIS_DEFAULTS.timeout),
    waitReplicas: config.wait_replicas ?? 0,
  }
}

/** Where the Redis is, for logs and `validate` (never its credentials). */
export function describeRedis(redis: CompiledRedis): string {
  const t = redis.topology
  if (t.kind === 'standalone') {
    try {
      const u = new URL(t.url)
      return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`
    } catch {
      return 'redis'
    }
  }
  if (t.kind === 'sentinel') return `sentinel master "${t.masterName}" via ${t.sentinels.map((n) => `${n.host}:${n.port}`).join(', ')}`
  return `cluster via ${t.nodes.map((n) => `${n.host}:${n.port}`).join(', ')}`
}
