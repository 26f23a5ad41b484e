import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashSecret } from '../../src/authorization-server/secret-hash.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { freePort } from '../helpers/redis.js'
import { bearer, send } from '../helpers/servers.js'

// The token endpoint under guessing and flooding: attempts are counted
// before the slow hash (concurrent guesses cannot outrun the throttle), the
// lockout is per (client, address) under a client-wide ceiling (an attacker
// cannot lock the real client out from elsewhere), and hashing runs on a
// thread of its own behind a bounded queue (it cannot take the libuv pool
// that JWT verification on the request path needs).

const SECRET = 'real-client-secret-0123456789'
let g: TestGateway
let issuer: string

beforeAll(async () => {
  const port = await freePort()
  issuer = `http://127.0.0.1:${port}`
  const hash = await hashSecret(SECRET)
  g = await startGateway(
    `
server: { trust_proxy: ["127.0.0.1"] }
authorization_server:
  issuer: ${issuer}
  throttle: { failures: 5, client_failures: 12, window: 1m }
  clients:
    - { client_id: victim, secret_hash: "${hash}", scopes: [read], default_scopes: [read], audiences: [api] }
    - { client_id: ceiling, secret_hash: "${hash}", scopes: [read], default_scopes: [read], audiences: [api] }
    - { client_id: caller, secret_hash: "${hash}", scopes: [read], default_scopes: [read], audiences: [api] }
issuers:
  - { id: local, issuer: "${issuer}", jwks_uri: "${issuer}/.well-known/jwks.json", audiences: [api] }
upstreams: { echo: { echo: true } }
routes:
  - { id: api, match: { path: /api/* }, upstream: echo, auth: { issuers: [local], scopes: none } }
`,
    {},
    { port },
  )
})
afterAll(() => g.close())

const basic = (id: string, secret: string): [string, string] => ['Authorization', 'Basic ' + Buffer.from(`${id}:${secret}`).toString('base64')]
const tokenRequest = (id: string, secret: string, from: string) =>
  send(g.url, {
    method: 'POST',
    path: '/oauth2/token',
    headers: [['Content-Type', 'application/x-www-form-urlencoded'], ['X-Forwarded-For', from], basic(id, secret)],
    body: 'grant_type=client_credentials',
  })

describe('guessing a client secret', () => {
  it('20 concurrent guesses from one address: at most `failures` are ever checked, the rest refused at once', async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => tokenRequest('victim', `guess-${i}-xxxxxxxxxxxx`, '10.0.0.1')))
    const statuses = answers.map((a) => a.status)
    expect(statuses.filter((s) => s === 200)).toEqual([])
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(5)
    expect(statuses.every((s) => s === 401 || s === 429 || s === 503)).toBe(true)
    // Guessing on from that address: checked failures never exceed the limit, then it is locked.
    let checked = statuses.filter((s) => s === 401).length
    for (let i = 0; i < 10; i++) {
      const status = (await tokenRequest('victim', `more-${i}-xxxxxxxxxxxx`, '10.0.0.1')).status
      if (status === 401) checked++
      else expect(status).toBe(429)
    }
    expect(checked).toBe(5)
    expect((await tokenRequest('victim', SECRET, '10.0.0.1')).status).toBe(429)
  })

  it("someone else's failures do not lock the real client out from its own address", async () => {
    expect((await tokenRequest('victim', SECRET, '10.0.0.2')).status).toBe(200)
  })

  it('guesses spread over many addresses stop at the client-wide ceiling', async () => {
    for (let i = 0; i < 12; i++) expect((await tokenRequest('ceiling', `guess-${i}-yyyyyyyyyyyy`, `10.1.0.${i}`)).status).toBe(401)
    expect((await tokenRequest('ceiling', 'another-guess-zzzzzzzz', '10.1.1.1')).status).toBe(429)
  })
})

describe('flooding the token endpoint', () => {
  it('random client ids from many addresses never starve JWT verification of the request path', async () => {
    const token = async (i: number) => (await tokenRequest('caller', SECRET, `10.9.9.${i}`)).json<{ access_token: string }>().access_token
    // Fresh tokens: each is verified (WebCrypto, on the libuv pool), none from the verified-token cache.
    const tokens = await Promise.all(Array.from({ length: 8 }, (_, i) => token(i)))
    const flood = Promise.all(Array.from({ length: 60 }, (_, i) => tokenRequest(`unknown-${i}`, 'whatever-secret-xxxxxxx', `10.2.${i >> 8}.${i & 255}`)))
    await new Promise((r) => setTimeout(r, 20))
    const started = performance.now()
    const calls = await Promise.all(tokens.map((t) => send(g.url, { path: '/api/x', headers: [bearer(t)] })))
    const elapsed = performance.now() - started
    expect(calls.map((c) => `${c.status} ${c.status === 200 ? "" : c.body}`)).toEqual(Array(8).fill("200 "))
    // With scrypt on the pool, 60 checks of ~50 ms on 4 threads queue every verification behind them (~750 ms).
    expect(elapsed).toBeLessThan(400)
    const answers = await flood
    // Beyond the bounded queue, the flood is refused at once rather than queued without bound.
    expect(answers.every((a) => a.status === 401 || a.status === 503)).toBe(true)
    for (const a of answers.filter((x) => x.status === 503)) expect(a.headers['retry-after']).toBe('1')
  })
})
