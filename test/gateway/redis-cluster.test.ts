import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { bearer, send } from '../helpers/servers.js'
import { RedisClusterSet } from '../helpers/redis-topology.js'
import { uniquePrefix } from '../helpers/redis.js'
import { hammer, ISS, until, useTopologyFixture } from '../helpers/topology-fixture.js'

// Shared state on a 3-master Redis Cluster started here on loopback: two
// gateway replicas share rate limits, the introspection cache and
// revocations; a slot migration under load loses no decision.

const fx = useTopologyFixture()
const { token, config } = fx

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
    fx.as.tokens.set(opaque, { active: true, iss: `${ISS}/opaque`, aud: 'api', scope: 'read', client_id: 'o', jti: 'cluster-jti' })
    const before = fx.as.totalCalls()
    expect((await send(replicas[0]!.url, { path: '/opaque', headers: [bearer(opaque)] })).status).toBe(200)
    expect((await send(replicas[1]!.url, { path: '/opaque', headers: [bearer(opaque)] })).status).toBe(200)
    expect(fx.as.totalCalls() - before).toBe(1)
    // A revocation made on one replica reaches the other (published through the cluster).
    const t = await token('revoked-client')
    expect((await send(replicas[1]!.url, { path: '/limited', headers: [bearer(t)] })).status).toBe(200)
    replicas[0]!.gateway.current.revocations.apply({ kind: 'client', issuer: ISS, id: 'revoked-client', before: Math.floor(Date.now() / 1000) + 1, until: Math.floor(Date.now() / 1000) + 3600 })
    await until(() => replicas[1]!.gateway.current.revocations.list().length > 0, 5000)
    expect((await send(replicas[1]!.url, { path: '/limited', headers: [bearer(t)] })).status).toBe(401)
  })
})
