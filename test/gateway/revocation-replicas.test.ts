import { generateKeyPairSync } from 'node:crypto'
import { SignJWT } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CREDENTIAL_CHANGE } from '../../src/pipeline/signals/ssf-receiver.js'
import { buildAdmin } from '../../src/admin/app.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startIntrospectionServer, type IntrospectionServer } from '../helpers/introspection-server.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { deletePrefix, freePort, OwnRedis, SHARED_REDIS_URL, uniquePrefix } from '../helpers/redis.js'
import { bearer, send } from '../helpers/servers.js'

// Revocation across replicas: a denial made through the operator API of one
// replica is refused by every replica within a second (Redis pub/sub), for
// JWTs (by token, jti, subject, client) and opaque tokens (by hash), under
// load; a replica cut from Redis catches up when it is back.

const ISS = 'https://idp.test.example'
const API_TOKEN = 'revocation-api-token-0123456789abcdef'
let key: TestKey
let jwks: JwksServer
let as: IntrospectionServer

beforeAll(async () => {
  key = await makeKey('ES256')
  jwks = await startJwksServer([key.publicJwk])
  as = await startIntrospectionServer()
})
afterAll(async () => {
  await jwks.close()
  await as.close()
})

function config(redisUrl: string, prefix: string): string {
  return `
cache: { redis: { url: "${redisUrl}", key_prefix: "${prefix}" } }
revocation: { api_token: "${API_TOKEN}", max_token_lifetime: 1h }
upstreams: { api: { echo: true } }
issuers:
  - { id: idp, issuer: ${ISS}, jwks_uri: ${jwks.jwksUri}, audiences: [api] }
  - id: opaque
    issuer: https://opaque.test.example
    audiences: [api]
    introspection: { endpoint: "${as.endpoint}", client_id: gateway, client_secret: "s3cret: +/%" }
routes:
  - { id: jwt, match: { path: /jwt/* }, upstream: api, auth: { issuers: [idp], scopes: none } }
  - { id: opaque, match: { path: /opaque/* }, upstream: api, auth: { issuers: [opaque], scopes: none } }
`
}

async function replicas(redisUrl: string, prefix: string) {
  const a = await startGateway(config(redisUrl, prefix))
  const b = await startGateway(config(redisUrl, prefix))
  const admin = buildAdmin(a.gateway)
  const adminUrl = await admin.listen({ host: '127.0.0.1', port: 0 })
  const revoke = (body: Record<string, unknown>, token = API_TOKEN) =>
    send(adminUrl, { method: 'POST', path: '/revocations', headers: [['Authorization', `Bearer ${token}`], ['Content-Type', 'application/json']], body: JSON.stringify(body) })
  return { a, b, adminUrl, revoke, close: async () => { await admin.close(); await a.close(); await b.close() } }
}

let n = 0
const jwt = (claims: Record<string, unknown> = {}) => sign(key, { iss: ISS, aud: 'api', sub: `user-${++n}`, client_id: `client-${n}`, jti: `jti-${n}-${Math.random()}`, iat: Math.floor(Date.now() / 1000) - 5, exp: Math.floor(Date.now() / 1000) + 600, ...claims })
function opaque(): string {
  const t = `opaque-${++n}-${Math.random().toString(36).slice(2)}`
  as.tokens.set(t, { active: true, iss: 'https://opaque.test.example', aud: 'api', sub: `o-${n}`, exp: Math.floor(Date.now() / 1000) + 600 })
  return t
}

/** Milliseconds until every replica refuses the token (keeps calling, as a client under load would). */
async function untilRefusedEverywhere(urls: string[], path: string, token: string, limitMs = 1000): Promise<number> {
  const started = Date.now()
  const refused = new Set<string>()
  while (refused.size < urls.length) {
    if (Date.now() - started > limitMs) throw new Error(`still accepted after ${limitMs} ms by ${urls.filter((u) => !refused.has(u)).join(', ')}`)
    await Promise.all(
      urls.map(async (u) => {
        const res = await send(u, { path, headers: [bearer(token)] })
        if (res.status === 401) refused.add(u)
      }),
    )
  }
  return Date.now() - started
}

describe('revocation across replicas', () => {
  const prefix = uniquePrefix('revocation')
  afterAll(() => deletePrefix(SHARED_REDIS_URL, prefix))

  it('the operator API is authenticated, and off without a token', async () => {
    const r = await replicas(SHARED_REDIS_URL, prefix)
    try {
      expect((await r.revoke({ token: 'x' }, 'wrong-token-wrong-token-wrong-token-x')).status).toBe(401)
      expect((await send(r.adminUrl, { method: 'POST', path: '/revocations', headers: [['Content-Type', 'application/json']], body: '{"token":"x"}' })).status).toBe(401)
      expect((await send(r.adminUrl, { path: '/revocations' })).status).toBe(401)
      expect((await r.revoke({ issuer: 'nobody', sub: 'x' })).status).toBe(400)
      const off = await startGateway(config(SHARED_REDIS_URL, prefix).replace(/revocation: .*\n/, ''))
      const offAdmin = buildAdmin(off.gateway)
      const url = await offAdmin.listen({ host: '127.0.0.1', port: 0 })
      expect((await send(url, { method: 'POST', path: '/revocations', headers: [['Authorization', `Bearer ${API_TOKEN}`], ['Content-Type', 'application/json']], body: '{"token":"x"}' })).status).toBe(404)
      await offAdmin.close()
      await off.close()
    } finally {
      await r.close()
    }
  })

  it('by token, jti, subject and client: every replica refuses within a second, other tokens unaffected', async () => {
    const r = await replicas(SHARED_REDIS_URL, prefix)
    const urls = [r.a.url, r.b.url]
    try {
      const cases: Array<[string, string, string, Record<string, unknown>]> = []
      const t1 = await jwt()
      cases.push(['token (a JWT: by its jti)', '/jwt/1', t1, { token: t1 }])
      const t2 = await jwt()
      cases.push(['issuer + jti', '/jwt/1', t2, { issuer: 'idp', jti: JSON.parse(Buffer.from(t2.split('.')[1]!, 'base64url').toString()).jti }])
      const t3 = await jwt({ sub: 'alice' })
      cases.push(['subject', '/jwt/1', t3, { issuer: ISS, sub: 'alice' }])
      const t4 = await jwt({ client_id: 'batch-job' })
      cases.push(['client', '/jwt/1', t4, { issuer: 'idp', client_id: 'batch-job' }])
      const t5 = opaque()
      cases.push(['opaque token (by its hash)', '/opaque/1', t5, { token: t5 }])
      const bystander = await jwt()
      for (const [what, path, token, body] of cases) {
        // Warm: both replicas have the token verified or introspected and cached.
        for (const u of urls) expect((await send(u, { path, headers: [bearer(token)] })).status, what).toBe(200)
        expect((await r.revoke(body)).status, what).toBe(201)
        const ms = await untilRefusedEverywhere(urls, path, token)
        expect(ms, what).toBeLessThanOrEqual(1000)
      }
      for (const u of urls) expect((await send(u, { path: '/jwt/1', headers: [bearer(bystander)] })).status).toBe(200)
      // A token of the same subject issued after the denial passes.
      expect((await send(r.b.url, { path: '/jwt/1', headers: [bearer(await jwt({ sub: 'alice', iat: Math.floor(Date.now() / 1000) + 2 }))] })).status).toBe(200)
      const listed = (await send(r.adminUrl, { path: '/revocations', headers: [['Authorization', `Bearer ${API_TOKEN}`]] })).json<{ count: number; denials: Array<{ kind: string }> }>()
      expect(new Set(listed.denials.map((d) => d.kind))).toEqual(new Set(['jti', 'sub', 'client', 'token']))
      expect(JSON.stringify(listed)).not.toContain(t5)
    } finally {
      await r.close()
    }
  })

  it('a replica cut from Redis catches up once it is back; a replica started later reads the denials in force', async () => {
    const redis = await OwnRedis.start()
    const own = uniquePrefix('revocation-restart')
    const r = await replicas(redis.url, own)
    let late: TestGateway | undefined
    try {
      const before = await jwt()
      for (const u of [r.a.url, r.b.url]) expect((await send(u, { path: '/jwt/1', headers: [bearer(before)] })).status).toBe(200)
      await redis.kill()
      // Made while Redis is down: applies on this replica at once, reaches the other once Redis is back.
      expect((await r.revoke({ token: before })).status).toBe(201)
      expect((await send(r.a.url, { path: '/jwt/1', headers: [bearer(before)] })).status).toBe(401)
      await redis.start()
      expect(await untilRefusedEverywhere([r.a.url, r.b.url], '/jwt/1', before, 5000)).toBeLessThan(5000)
      late = await startGateway(config(redis.url, own))
      expect(await untilRefusedEverywhere([late.url], '/jwt/1', before, 3000)).toBeLessThan(3000)
    } finally {
      await late?.close()
      await r.close()
      await redis.kill()
    }
  })

  it('through the built-in authorization server and Shared Signals too, under load, with no failed request', async () => {
    const own = uniquePrefix('revocation-channels')
    const portA = await freePort()
    const asUrl = `http://127.0.0.1:${portA}`
    const tx = await makeKey('ES256')
    const txJwks = await startJwksServer([tx.publicJwk])
    const files = { 'as.pem': generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string }
    const yaml = `${config(SHARED_REDIS_URL, own)}
authorization_server:
  issuer: "${asUrl}"
  keys: [{ file: as.pem, kid: as-1 }]
  clients:
    - client_id: demo-client
      secret_hash: "$scrypt$ln=15,r=8,p=1$LN_IRS5uv_8US990QDnejQ$MVljZmvUIdFJS7_Im3oKiKzzoHpJhEZkYsMeKXdD5zI"
      scopes: [orders:read]
      default_scopes: [orders:read]
      audiences: [api]
`
      .replace('issuers:\n', `issuers:\n  - { id: local, issuer: "${asUrl}", jwks_uri: "${asUrl}/.well-known/jwks.json", audiences: [api] }\n`)
      .replace('routes:\n', 'routes:\n  - { id: local-api, match: { path: /local/* }, upstream: api, auth: { issuers: [local], scopes: none } }\n')
      .replace('revocation: {', `revocation: { signals: { transmitters: [{ issuer: https://tx.example, jwks_uri: ${txJwks.jwksUri}, audience: gw }] }, `)
    const a = await startGateway(yaml, files, { port: portA })
    const b = await startGateway(yaml, files)
    const urls = [a.url, b.url]
    const stop = { now: false }
    const failures: number[] = []
    const bystander = await jwt()
    const load = Promise.all(
      urls.map(async (u) => {
        while (!stop.now) {
          const res = await send(u, { path: '/jwt/1', headers: [bearer(bystander)] })
          if (res.status !== 200) failures.push(res.status)
        }
      }),
    )
    try {
      // The built-in authorization server's revocation endpoint, on replica A.
      const issued = await send(a.url, { method: 'POST', path: '/oauth2/token', headers: [['Authorization', `Basic ${Buffer.from('demo-client:demo-secret-change-me').toString('base64')}`], ['Content-Type', 'application/x-www-form-urlencoded']], body: 'grant_type=client_credentials' })
      const local = issued.json<{ access_token: string }>().access_token
      for (const u of urls) expect((await send(u, { path: '/local/1', headers: [bearer(local)] })).status).toBe(200)
      const revoked = await send(a.url, { method: 'POST', path: '/oauth2/revoke', headers: [['Authorization', `Basic ${Buffer.from('demo-client:demo-secret-change-me').toString('base64')}`], ['Content-Type', 'application/x-www-form-urlencoded']], body: `token=${local}` })
      expect(revoked.status).toBe(200)
      expect(await untilRefusedEverywhere(urls, '/local/1', local)).toBeLessThanOrEqual(1000)

      // A Shared Signals event pushed to replica B.
      const t = await jwt({ sub: 'erin' })
      for (const u of urls) expect((await send(u, { path: '/jwt/1', headers: [bearer(t)] })).status).toBe(200)
      const set = await new SignJWT({ sub_id: { format: 'iss_sub', iss: ISS, sub: 'erin' }, events: { [CREDENTIAL_CHANGE]: { credential_type: 'password', change_type: 'update' } } })
        .setProtectedHeader({ alg: 'ES256', kid: tx.kid, typ: 'secevent+jwt' })
        .setIssuer('https://tx.example')
        .setAudience('gw')
        .setIssuedAt()
        .setJti('set-erin')
        .sign(tx.privateKey)
      expect((await send(b.url, { method: 'POST', path: '/ssf/events', headers: [['Content-Type', 'application/secevent+jwt']], body: set })).status).toBe(202)
      expect(await untilRefusedEverywhere(urls, '/jwt/1', t)).toBeLessThanOrEqual(1000)
    } finally {
      stop.now = true
      await load
      await a.close()
      await b.close()
      await txJwks.close()
      await deletePrefix(SHARED_REDIS_URL, own)
    }
    expect(failures).toEqual([])
  })
})
