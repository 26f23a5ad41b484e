import { afterAll, beforeAll } from 'vitest'
import { makeKey, sign } from './keys.js'
import { startJwksServer } from './jwks.js'
import { startIntrospectionServer, type IntrospectionServer } from './introspection-server.js'
import { bearer, send, startEchoUpstream } from './servers.js'
import type { TestGateway } from './gateway.js'

/**
 * What the Redis topology tests share: a JWKS, an introspection endpoint and
 * an upstream on loopback, and the gateway configuration on a given Redis
 * (a route limited per client, on_redis_error: deny; an introspected route).
 */

export const ISS = 'https://topology.test.example'

export interface TopologyFixture {
  readonly as: IntrospectionServer
  token(clientId: string): Promise<string>
  /** The gateway's YAML on this Redis block, with `limit` requests per hour per client on /limited. */
  config(redis: string, limit: number): string
  close(): Promise<void>
}

export async function startTopologyFixture(): Promise<TopologyFixture> {
  const key = await makeKey('ES256')
  const jwks = await startJwksServer([key.publicJwk])
  const as = await startIntrospectionServer()
  const upstream = await startEchoUpstream()
  return {
    as,
    token: (clientId) => sign(key, { iss: ISS, aud: 'api', sub: 'u', client_id: clientId, scope: 'read' }),
    config: (redis, limit) => `
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
`,
    async close() {
      await upstream.close()
      await jwks.close()
      await as.close()
    },
  }
}

/** The fixture for a test file: started before its tests, closed after them. */
export function useTopologyFixture(): Omit<TopologyFixture, 'close'> {
  let fx: TopologyFixture | undefined
  beforeAll(async () => {
    fx = await startTopologyFixture()
  })
  afterAll(async () => {
    await fx?.close()
  })
  return {
    get as() {
      return fx!.as
    },
    token: (clientId) => fx!.token(clientId),
    config: (redis, limit) => fx!.config(redis, limit),
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export interface Tally {
  allowed: number
  limited: number
  unavailable: number
  other: number[]
}

/**
 * Sends requests from both replicas, `width` at a time, until `done()` and
 * then until 20 refusals in a row come back: the bucket is spent.
 */
export async function hammer(replicas: readonly TestGateway[], t: string, done: () => boolean, width = 6): Promise<Tally> {
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

export async function until(what: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!what()) {
    if (Date.now() > end) throw new Error('timed out')
    await sleep(20)
  }
}
