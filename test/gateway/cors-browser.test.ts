import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { listen, type Listening } from '../helpers/servers.js'

// CORS as a browser enforces it: a page on the allowed origin calls a
// protected route with its token (preflight, then the call) and reads the
// answer, and reads a refusal too; a page on another origin is blocked by
// the browser itself. Chromium from Debian's package (.ci/run installs it).

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const ISS = 'https://idp.test.example'
let browser: Browser
let allowedPage: Listening
let otherPage: Listening
let jwks: JwksServer
let key: TestKey
let gw: TestGateway

const page = () => listen((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>app</title><p>app</p>'))

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) return
  allowedPage = await page()
  otherPage = await page()
  key = await makeKey('ES256')
  jwks = await startJwksServer([key.publicJwk])
  gw = await startGateway(`
upstreams: { api: { echo: true } }
issuers:
  - { id: idp, issuer: ${ISS}, jwks_uri: ${jwks.jwksUri}, audiences: [api] }
cors:
  allowed_origins: ["${allowedPage.url}"]
  allowed_headers: [Authorization]
  allowed_methods: [GET]
routes:
  - id: orders
    match: { path: /orders/*, methods: [GET, DELETE] }
    upstream: api
    auth: { issuers: [idp], scopes: { all_of: [orders:read] } }
`)
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] })
}, 60_000)
afterAll(async () => {
  await browser?.close()
  await gw?.close()
  await allowedPage?.close()
  await otherPage?.close()
  await jwks?.close()
})

interface Result {
  ok: boolean
  status?: number
  body?: unknown
  challenge?: string | null
  error?: string
}

async function callFrom(origin: string, url: string, token: string | undefined, method = 'GET'): Promise<Result> {
  const tab = await browser.newPage()
  try {
    await tab.goto(origin)
    return await tab.evaluate(
      async ({ url, token, method }) => {
        try {
          const res = await fetch(url, { method, headers: token ? { Authorization: `Bearer ${token}` } : {} })
          return { ok: true, status: res.status, body: await res.json(), challenge: res.headers.get('www-authenticate') }
        } catch (err) {
          return { ok: false, error: String(err) }
        }
      },
      { url, token, method },
    )
  } finally {
    await tab.close()
  }
}

// In CI the browser is installed by .ci/run: there, a missing one fails rather than skips.
describe.skipIf(!existsSync(CHROMIUM) && !process.env.CI)(`CORS in a real browser (${CHROMIUM}${existsSync(CHROMIUM) ? '' : ' not installed: skipped, run .ci/run to install it'})`, () => {
  it('a page on the allowed origin calls the API with its token and reads the answer; without one, it reads the 401', async () => {
    const token = await sign(key, { iss: ISS, aud: 'api', sub: 'ann', scope: 'orders:read', exp: Math.floor(Date.now() / 1000) + 600 })
    const ok = await callFrom(allowedPage.url, `${gw.url}/orders/7`, token)
    expect(ok).toMatchObject({ ok: true, status: 200, body: { method: 'GET', path: '/orders/7' } })
    expect((ok.body as { headers: Record<string, string> }).headers['x-subject']).toBe('ann')
    const preflights = gw.logs.filter((l) => l.msg === 'request' && l.method === 'OPTIONS')
    expect(preflights.map((l) => [l.status, l.reason])).toEqual([[204, 'cors_preflight']])

    const refused = await callFrom(allowedPage.url, `${gw.url}/orders/7`, undefined)
    expect(refused).toMatchObject({ ok: true, status: 401 })
    expect(refused.challenge).toContain('Bearer realm=')
  })

  it('a page on another origin is blocked by the browser, token or not', async () => {
    const token = await sign(key, { iss: ISS, aud: 'api', sub: 'ann', scope: 'orders:read', exp: Math.floor(Date.now() / 1000) + 600 })
    for (const t of [token, undefined]) {
      const blocked = await callFrom(otherPage.url, `${gw.url}/orders/7`, t)
      expect(blocked.ok).toBe(false)
      expect(blocked.error).toMatch(/TypeError/)
    }
    // A method the policy does not allow is blocked at the preflight, on the allowed origin too.
    const del = await callFrom(allowedPage.url, `${gw.url}/orders/7`, token, 'DELETE')
    expect(del.ok).toBe(false)
  })
})
