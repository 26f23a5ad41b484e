import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { bearer, send } from '../helpers/servers.js'
import { SentinelSet } from '../helpers/redis-topology.js'
import { uniquePrefix } from '../helpers/redis.js'
import { hammer, ISS, sleep, until, useTopologyFixture } from '../helpers/topology-fixture.js'

// Shared state on Redis Sentinel started here on loopback (a master, its
// replicas, 3 sentinels): two gateway replicas share rate limits and the
// introspection cache; a failover under load allows nothing twice.

const fx = useTopologyFixture()
const { token, config } = fx

describe('Redis Sentinel', () => {
  let set: SentinelSet
  const replicas: TestGateway[] = []
  beforeAll(async () => {
    set = await SentinelSet.start()
    const prefix = uniquePrefix('sentinel')
    for (let i = 0; i < 2; i++) replicas.push(await startGateway(config(set.yaml(prefix, ', wait_replicas: 1'), 150)))
    await until(() => replicas.every((g) => g.gateway.sharedStore?.up === true))
  }, 60_000)
  afterAll(async () => {
    for (const g of replicas) await g.close()
    await set?.stop()
  })

  it('limits are exact across two replicas, and a failover under load loses no decision: no wrong allow, 503 only while the master moves', async () => {
    const t = await token('sentinel-client')
    let failedOver = false
    let moved: { from: number; to: number } | undefined
    const load = hammer(replicas, t, () => failedOver, 4)
    await sleep(150)
    moved = await set.failover()
    failedOver = true
    const tally = await load
    expect(moved.to).not.toBe(moved.from)
    expect(tally.other).toEqual([])
    // Never more than the limit: every allow was on the replica before it counted (wait_replicas: 1),
    // so the promoted master has it. A request in flight when the master changed may have been
    // counted without an answer: at most the 4 sent at a time, each of the two switches.
    expect(tally.allowed).toBeLessThanOrEqual(150)
    expect(tally.allowed).toBeGreaterThanOrEqual(150 - 8)
    // The 503s are the fail mode (deny) while no replica acknowledged: the promoted master had none until the old one rejoined.
    expect(tally.unavailable).toBeGreaterThan(0)
    expect(tally.limited).toBeGreaterThanOrEqual(20)
  }, 60_000)

  it('the introspection cache is shared through the new master', async () => {
    const opaque = `opaque-${Math.random()}`
    fx.as.tokens.set(opaque, { active: true, iss: `${ISS}/opaque`, aud: 'api', scope: 'read', client_id: 'o' })
    const before = fx.as.totalCalls()
    expect((await send(replicas[0]!.url, { path: '/opaque', headers: [bearer(opaque)] })).status).toBe(200)
    expect((await send(replicas[1]!.url, { path: '/opaque', headers: [bearer(opaque)] })).status).toBe(200)
    expect(fx.as.totalCalls() - before).toBe(1)
  })
})

describe('Redis Sentinel: a master that dies with decisions its replica never got', () => {
  let set: SentinelSet
  let g: TestGateway
  beforeAll(async () => {
    // Two replicas: once one is promoted, the other acknowledges its writes.
    set = await SentinelSet.start(2)
    g = await startGateway(config(set.yaml(uniquePrefix('crash'), ', wait_replicas: 1'), 10))
    await until(() => g.gateway.sharedStore?.up === true)
  }, 60_000)
  afterAll(async () => {
    await g?.close()
    await set?.stop()
  })

  it('with wait_replicas, a decision the replica did not acknowledge is never an allow, so the promoted replica cannot allow it again', async () => {
    const t = await token('crash-client')
    const call = async () => (await send(g.url, { path: '/limited', headers: [bearer(t)] })).status
    const master = await set.masterPort()
    const replicas = set.dataPorts.filter((p) => p !== master)
    expect(await call()).toBe(200)
    // The replicas stop replicating: the master alone would have the decisions.
    for (const p of replicas) set.pause(p)
    const whileAlone: number[] = []
    for (let i = 0; i < 12; i++) whileAlone.push(await call())
    expect(whileAlone.every((s) => s === 503)).toBe(true)
    // The master dies with whatever it had; the replica comes back and is promoted.
    await set.kill(master)
    for (const p of replicas) set.resume(p)
    await set.masterOtherThan(master)
    const after: number[] = []
    for (let i = 0; i < 200 && after.filter((s) => s === 429).length < 5; i++) {
      after.push(await call())
      if (after.at(-1) !== 200 && after.at(-1) !== 429) await sleep(50)
    }
    expect(after.filter((s) => s !== 200 && s !== 429 && s !== 503)).toEqual([])
    // 1 before, at most 9 after (without wait_replicas the 12 made while alone would have been
    // allowed, then 9 more); a request in flight while the master changed may cost one or two.
    const allowed = after.filter((s) => s === 200).length
    expect(allowed).toBeLessThanOrEqual(9)
    expect(allowed).toBeGreaterThanOrEqual(7)
  }, 60_000)
})

