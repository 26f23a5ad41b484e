import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { startIntrospectionServer, type IntrospectionServer } from '../helpers/introspection-server.js'
import { bearer, send, startEchoUpstream, type Echoed, type Listening } from '../helpers/servers.js'
import { RedisClusterSet } from '../helpers/redis-topology.js'
import { uniquePrefix } from '../helpers/redis.js'

// Shared state on a 3-master Redis Cluster started here on loopback: two
// gateway replicas share rate limits, the introspection cache and
// revocations; a slot migration under load loses no decision.

const ISS = 'https://topology.test.example'
let key: TestKey
let jwks: JwksServer
let as: IntrospectionServer
let upstream: Listening & { received: Echoed[] }

beforeAll(async () => {
  key = await makeKey('ES256')
  jwks = await startJwksServer([key.publicJwk])
  as = await startIntrospectionServer()
  upstream = await startEchoUpstream()
})
afterAll(async () => {
  await upstream?.close()
  await jwks?.close()
  await as?.close()
})

const token = (clientId: string) => sign(key, { iss: ISS, aud: 'api', sub: 'u', client_id: clientId, scope: 'read' })

function config(redis: string, limit: number): string {
  return `
${redis}
upstreams: { api: { url: "${upstream.url}" } }
issuers:
  - id: corp
    issuer: ${ISS}
    jwks_uri: "${jwks.jwksUri}"
    audiences: [api]
    algorithms: [ES256]
  - id: opaque
    issuer: ${ISS}/opaque
    audiences: [api]
    introspection: { endpoint: "${as.endpoint}", client_id: gateway, client_secret: "s3cret: +/%" }
routes:
  - id: limited
    match: { path: /limited }
    upstream: api
    auth: { issuers: [corp], scopes: { all_of: [read] } }
    rate_limits:
      - { id: per-client, requests: ${limit}, per: 1h, by: [client_id], on_redis_error: deny }
  - id: opaque
    match: { path: /opaque }
    upstream: api
    auth: { issuers: [opaque], scopes: { all_of: [read] } }
`
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Tally {
  allowed: number
  limited: number
  unavailable: number
  other: number[]
}

/**
 * Sends requests from both replicas, `width` at a time, until `done()` and
 * then until `quiet` refusals in a row come back: the bucket is spent.
 */
async function hammer(replicas: readonly TestGateway[], t: string, done: () => boolean, width = 6): Promise<Tally> {
  const tally: Tally = { allowed: 0, limited: 0, unavailable: 0, other: [] }
  let refusedInARow = 0
  let i = 0
  while (!done() || refusedInARow < 20) {
    const batch = await Promise.all(Array.from({ length: width }, () => send(replicas[i++ % replicas.length]!.url, { path: '/limited', headers: [bearer(t)] })))
    for (const r of batch) {
      if (r.status === 200) tally.allowed++
      else if (r.status === 429) tally.limited++
      else if (r.status === 503) tally.unavailable++
      else tally.other.push(r.status)
      refusedInARow = r.status === 429 ? refusedInARow + 1 : 0
    }
    await sleep(5)
  }
  return tally
}

async function until(what: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!what()) {
    if (Date.now() > end) throw new Error('timed out')
    await sleep(20)
  }
}

describe('Redis Cluster', () => {
  let cluster: RedisClusterSet
  const replicas: TestGateway[] = []
  let prefix: string
  beforeAll(async () => {
    cluster = await RedisClusterSet.start(3)
    prefix = uniquePrefix('cluster')
    for (let i = 0; i < 2; i++) replicas.push(await startGateway(config(cluster.yaml(prefix), 120)))
    await until(() => replicas.every((g) => g.gateway.sharedStore?.up === true))
  }, 60_000)
  afterAll(async () => {
    for (const g of replicas) await g.close()
    await cluster?.stop()
  })

  it('limits are exact across two replicas, and a slot migration under load loses no decision', async () => {
    const t = await token('cluster-client')
    expect((await send(replicas[0]!.url, { path: '/limited', headers: [bearer(t)] })).status).toBe(200)
    const keys = await cluster.keys(`${prefix}rl:*`)
    expect(keys).toHaveLength(1)
    const slot = await cluster.keySlot(keys[0]!)
    let migrated = false
    const load = hammer(replicas, t, () => migrated, 4)
    const moved = await cluster.migrateSlot(slot, 300)
    migrated = true
    const tally = await load
    expect(moved.to).not.toBe(moved.from)
    expect((await cluster.owner(slot)).port).toBe(moved.to)
    expect(tally.other).toEqual([])
    expect(tally.unavailable).toBe(0)
    expect(tally.allowed + 1).toBe(120)
  }, 60_000)

  it('the introspection cache and revocations are shared across the cluster', async () => {
    const opaque = `opaque-${Math.random()}`
    as.tokens.set(opaque, { active: true, iss: `${ISS}/opaque`, aud: 'api', scope: 'read', client_id: 'o', jti: 'cluster-jti' })
    const before = as.totalCalls()
    expect((await send(replicas[0]!.url, { path: '/opaque', headers: [bearer(opaque)] })).status).toBe(200)
    expect((await send(replicas[1]!.url, { path: '/opaque', headers: [bearer(opaque)] })).status).toBe(200)
    expect(as.totalCalls() - before).toBe(1)
    // A revocation made on one replica reaches the other (published through the cluster).
    const t = await token('revoked-client')
    expect((await send(replicas[1]!.url, { path: '/limited', headers: [bearer(t)] })).status).toBe(200)
    replicas[0]!.gateway.current.revocations.apply({ kind: 'client', issuer: ISS, id: 'revoked-client', before: Math.floor(Date.now() / 1000) + 1, until: Math.floor(Date.now() / 1000) + 3600 })
    await until(() => replicas[1]!.gateway.current.revocations.list().length > 0, 5000)
    expect((await send(replicas[1]!.url, { path: '/limited', headers: [bearer(t)] })).status).toBe(401)
  })
})
