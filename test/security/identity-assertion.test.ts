import { generateKeyPairSync } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { assertionVerifier } from '../../examples/verify-assertion/verify.mjs'
import { buildAdmin } from '../../src/admin/app.js'
import { compileConfig } from '../../src/config/compile.js'
import { parseConfig } from '../../src/config/load.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { bearer, send, startEchoUpstream, type Echoed, type Listening } from '../helpers/servers.js'

// Upstreams that verify the gateway's assertions (examples/verify-assertion,
// as a service would run it) trust no header a client or a neighbour sends:
// an assertion is for one service (aud), short-lived, bound to its request
// when asked, and the client's own X-Gateway-Assertion never arrives.

const ISS = 'https://idp.test.example'
const GW = 'https://gateway.test.example'
let jwks: JwksServer
let key: TestKey
let echo: Listening & { received: Echoed[] }
let g: TestGateway
let admin: ReturnType<typeof buildAdmin>
let adminUrl: string
const services: Array<{ server: Server; url: string; seen: Array<{ ok: boolean; claims?: Record<string, unknown>; error?: string; assertion?: string }> }> = []

/** A service that verifies assertions for `audience` (the example's verifier), recording what it saw. */
async function service(audience: string) {
  // Services refetch the keys every 300 ms here (60 s in the example): the rotation test waits that long between steps.
  const verify = assertionVerifier({ jwksUrl: `${adminUrl}/.well-known/gateway-jwks.json`, issuer: GW, audience, cacheMaxAge: 300 })
  const seen: (typeof services)[number]['seen'] = []
  const server = createServer((req, res) => {
    verify(req).then(
      (claims: Record<string, unknown>) => {
        seen.push({ ok: true, claims, assertion: req.headers['x-gateway-assertion'] as string })
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sub: claims.sub }))
      },
      (err: Error) => {
        seen.push({ ok: false, error: err.message, assertion: req.headers['x-gateway-assertion'] as string | undefined })
        res.writeHead(401).end()
      },
    )
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const s = { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
  services.push(s)
  return s
}

const pem = () => generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
const files = { 'k1.pem': pem(), 'k2.pem': pem(), 'p256.pem': generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string }

function config(a: string, b: string, keys = '[{ file: k1.pem, kid: k1 }]'): string {
  return `
identity_assertion:
  issuer: ${GW}
  keys: ${keys}
  lifetime: 30s
  claims: [email, realm_access.roles, "__proto__.polluted"]
upstreams:
  orders: { url: "${a}", assertion: true }
  billing: { url: "${b}", assertion: { bind_request: true } }
  plain: { url: "${echo.url}" }
  echo: { echo: true, assertion: { header: X-Service-Identity } }
issuers:
  - { id: idp, issuer: ${ISS}, jwks_uri: ${jwks.jwksUri}, audiences: [api] }
routes:
  - { id: orders, match: { path: /orders/* }, upstream: orders, auth: { issuers: [idp], scopes: none } }
  - { id: billing, match: { path: /billing/* }, upstream: billing, auth: { issuers: [idp], scopes: none } }
  - { id: plain, match: { path: /plain/* }, upstream: plain, auth: { issuers: [idp], scopes: none } }
  - { id: open, match: { path: /open/* }, upstream: plain, auth: public }
  - { id: echo, match: { path: /echo/* }, upstream: echo, auth: { issuers: [idp], scopes: none } }
`
}

let orders: Awaited<ReturnType<typeof service>>
let billing: Awaited<ReturnType<typeof service>>

beforeAll(async () => {
  key = await makeKey('ES256')
  jwks = await startJwksServer([key.publicJwk])
  echo = await startEchoUpstream()
  // The admin listener's address is needed by the services before the gateway exists: start on a reserved port.
  const placeholder = createServer()
  await new Promise<void>((r) => placeholder.listen(0, '127.0.0.1', r))
  const adminPort = (placeholder.address() as AddressInfo).port
  await new Promise((r) => placeholder.close(r))
  adminUrl = `http://127.0.0.1:${adminPort}`
  orders = await service('orders')
  billing = await service('billing')
  g = await startGateway(config(orders.url, billing.url), files)
  admin = buildAdmin(g.gateway)
  await admin.listen({ host: '127.0.0.1', port: adminPort })
})
afterAll(async () => {
  await admin?.close()
  await g?.close()
  for (const s of services) await new Promise((r) => s.server.close(r))
  await echo.close()
  await jwks.close()
})

const token = (claims: Record<string, unknown> = {}) => sign(key, { iss: ISS, aud: 'api', sub: 'ann', client_id: 'app', scope: 'a b', exp: Math.floor(Date.now() / 1000) + 600, ...claims })

describe('identity assertions', () => {
  it('the service verifies who the request acts for, with the claims configured', async () => {
    const res = await send(g.url, { path: '/orders/1', headers: [bearer(await token({ email: 'ann@x.example', realm_access: { roles: ['r1'], other: 1 } }))] })
    expect(res.status).toBe(200)
    const last = orders.seen.at(-1)!
    expect(last.ok).toBe(true)
    expect(last.claims).toMatchObject({ iss: GW, aud: 'orders', sub: 'ann', client_id: 'app', scope: 'a b', token_iss: ISS, email: 'ann@x.example', realm_access: { roles: ['r1'] } })
    expect((last.claims!.realm_access as Record<string, unknown>).other).toBeUndefined()
    expect(last.claims!.exp as number - (last.claims!.iat as number)).toBe(30)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('an assertion made for one service is refused by another (aud)', async () => {
    await send(g.url, { path: '/orders/1', headers: [bearer(await token())] })
    const forOrders = orders.seen.at(-1)!.assertion!
    const replay = await fetch(`${billing.url}/billing/1`, { headers: { 'x-gateway-assertion': forOrders } })
    expect(replay.status).toBe(401)
    expect(billing.seen.at(-1)!.error).toMatch(/aud/)
  })

  it('a bound assertion is refused on any other method, path or query', async () => {
    const t = await token()
    expect((await send(g.url, { path: '/billing/7?x=1', headers: [bearer(t)] })).status).toBe(200)
    const bound = billing.seen.at(-1)!.assertion!
    expect(decodeJwt(bound)).toMatchObject({ htm: 'GET', htp: '/billing/7' })
    for (const [method, path] of [['GET', '/billing/8?x=1'], ['GET', '/billing/7?x=2'], ['GET', '/billing/7'], ['DELETE', '/billing/7?x=1']]) {
      const replay = await fetch(`${billing.url}${path}`, { method, headers: { 'x-gateway-assertion': bound } })
      expect(replay.status, `${method} ${path}`).toBe(401)
    }
    expect((await fetch(`${billing.url}/billing/7?x=1`, { headers: { 'x-gateway-assertion': bound } })).status).toBe(200)
  })

  it('unbound assertions are reused for a repeated token; bound ones are made per request', async () => {
    const t = await token()
    // The first request verifies the token; the next ones find it verified, and its assertion made.
    for (let i = 0; i < 4; i++) await send(g.url, { path: '/orders/1', headers: [bearer(t)] })
    expect(new Set(orders.seen.slice(-3).map((s) => s.assertion)).size).toBe(1)
    for (let i = 0; i < 3; i++) await send(g.url, { path: '/billing/1', headers: [bearer(t)] })
    expect(new Set(billing.seen.slice(-3).map((s) => s.assertion)).size).toBe(3)
  })

  it('never outlives the token', async () => {
    await send(g.url, { path: '/orders/1', headers: [bearer(await token({ exp: Math.floor(Date.now() / 1000) + 5 }))] })
    const claims = orders.seen.at(-1)!.claims!
    expect(claims.exp as number).toBeLessThanOrEqual((claims.iat as number) + 5)
  })

  it('a client-sent assertion header never reaches an upstream, in any spelling, on any route', async () => {
    const forged: Array<[string, string]> = [['X-Gateway-Assertion', 'forged'], ['x_gateway_assertion', 'forged'], ['X-GATEWAY-ASSERTION', 'forged'], ['X.Gateway.Assertion', 'forged'], ['X-Service-Identity', 'forged'], ['x_service_identity', 'forged']]
    const t = await token()
    for (const path of ['/plain/1', '/open/1']) {
      const before = echo.received.length
      expect((await send(g.url, { path, headers: [bearer(t), ...forged] })).status).toBe(200)
      expect(echo.received.length).toBe(before + 1)
      expect(Object.keys(echo.received.at(-1)!.headers).filter((h) => /assertion|identity/.test(h))).toEqual([])
    }
    // With its own header name: the gateway's value only.
    const res = await send(g.url, { path: '/echo/1', headers: [bearer(t), ...forged] })
    const seen = res.json<{ headers: Record<string, string> }>().headers
    expect(Object.keys(seen).filter((h) => /assertion|identity/.test(h))).toEqual(['x-service-identity'])
    expect(decodeJwt(seen['x-service-identity']!)).toMatchObject({ aud: 'echo', sub: 'ann' })
    // And on a route whose upstream takes an assertion, the client's is replaced by the gateway's.
    await send(g.url, { path: '/orders/1', headers: [bearer(t), ['X-Gateway-Assertion', 'forged']] })
    expect(orders.seen.at(-1)!.ok).toBe(true)
  })

  it('a direct call to the service with spoofed identity headers and no assertion is refused', async () => {
    const res = await fetch(`${orders.url}/orders/1`, { headers: { 'x-client-id': 'admin', 'x-subject': 'root' } })
    expect(res.status).toBe(401)
  })

  it('rotates keys without a window: next key published first, then signing, while assertions signed before still verify', async () => {
    const t = await token()
    const stop = { now: false }
    const failures: number[] = []
    const load = (async () => {
      let i = 0
      while (!stop.now) {
        const res = await send(g.url, { path: `/billing/${i++}`, headers: [bearer(t)] })
        if (res.status !== 200) failures.push(res.status)
      }
    })()
    const reload = async (keys: string) => g.gateway.setConfig(await compileConfig(parseConfig(config(orders.url, billing.url, keys), `${g.dir}/gateway.yaml`), { previous: g.gateway.current }))
    await send(g.url, { path: '/orders/1', headers: [bearer(t)] })
    const signedByK1 = orders.seen.at(-1)!.assertion!
    await reload('[{ file: k1.pem, kid: k1 }, { file: k2.pem, kid: k2 }]') // k2 published
    await new Promise((r) => setTimeout(r, 700)) // the services' key cache age, and some
    await reload('[{ file: k2.pem, kid: k2 }, { file: k1.pem, kid: k1 }]') // k2 signs, k1 still published
    await new Promise((r) => setTimeout(r, 400))
    stop.now = true
    await load
    expect(failures).toEqual([])
    expect(decodeProtectedHeader(billing.seen.at(-1)!.assertion!).kid).toBe('k2')
    expect((await fetch(`${orders.url}/orders/1`, { headers: { 'x-gateway-assertion': signedByK1 } })).status).toBe(200)
    const published = await (await fetch(`${adminUrl}/.well-known/gateway-jwks.json`)).json() as { keys: Array<{ kid: string; d?: string }> }
    expect(published.keys.map((k) => k.kid)).toEqual(['k2', 'k1'])
    expect(published.keys.every((k) => k.d === undefined)).toBe(true)
  })
})
