import { generateKeyPairSync } from 'node:crypto'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { buildGateway, type Gateway } from '../../src/app.js'
import { compileConfig } from '../../src/config/compile.js'
import { parseConfig } from '../../src/config/load.js'
import { freePort } from '../helpers/redis.js'
import { spawnGateway } from '../helpers/running.js'
import { bearer, send } from '../helpers/servers.js'

// RFC 7009 at the built-in authorization server: a token revoked there is
// refused by the gateway at once (its verified-token cache included), on
// every worker, across reloads; revoking is for the client the token was
// issued to; the endpoint says nothing about tokens it does not know.

const DEMO = `Basic ${Buffer.from('demo-client:demo-secret-change-me').toString('base64')}`
const FORM: [string, string] = ['Content-Type', 'application/x-www-form-urlencoded']
let running: Gateway | undefined
afterEach(async () => {
  await running?.close()
  running = undefined
})

async function quickstart(extraClient = ''): Promise<{ url: string; file: string; text: string }> {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const file = 'config/gateway.yaml'
  const text = (await readFile(file, 'utf8')).replace('      audiences: [orders-api]\n', `      audiences: [orders-api]\n${extraClient}`)
  const env = { GATEWAY_LISTEN: `127.0.0.1:${port}`, ADMIN_LISTEN: '127.0.0.1:0', PUBLIC_URL: url }
  running = await buildGateway({ config: await compileConfig(parseConfig(text, file, env)) })
  await running.app.listen({ host: '127.0.0.1', port })
  return { url, file, text }
}

async function token(url: string, auth = DEMO): Promise<string> {
  const res = await send(url, { method: 'POST', path: '/oauth2/token', headers: [['Authorization', auth], FORM], body: 'grant_type=client_credentials' })
  expect(res.status).toBe(200)
  return res.json<{ access_token: string }>().access_token
}

const revoke = (url: string, t: string, auth = DEMO) => send(url, { method: 'POST', path: '/oauth2/revoke', headers: [['Authorization', auth], FORM], body: `token=${encodeURIComponent(t)}&token_type_hint=access_token` })

describe('revocation at the built-in authorization server', () => {
  it('is advertised, and a revoked token is refused at once, even from the verified-token cache', async () => {
    const { url } = await quickstart()
    const meta = await send(url, { path: '/.well-known/oauth-authorization-server' })
    expect(meta.json()).toMatchObject({ revocation_endpoint: `${url}/oauth2/revoke`, revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'] })
    const t = await token(url)
    const other = await token(url)
    for (let i = 0; i < 2; i++) expect((await send(url, { path: '/orders/1', headers: [bearer(t)] })).status).toBe(200)
    const res = await revoke(url, t)
    expect(res.status).toBe(200)
    const refused = await send(url, { path: '/orders/1', headers: [bearer(t)] })
    expect(refused.status).toBe(401)
    expect(refused.headers['www-authenticate']).toContain('error="invalid_token"')
    expect(refused.json()).toMatchObject({ error_description: 'the token has been revoked' })
    // Only that token.
    expect((await send(url, { path: '/orders/1', headers: [bearer(other)] })).status).toBe(200)
  })

  it('answers 200 for unknown, malformed or expired tokens, needs client authentication, and refuses another client\'s token', async () => {
    const { url } = await quickstart(`    - client_id: other-client
      secret_hash: "$scrypt$ln=15,r=8,p=1$LN_IRS5uv_8US990QDnejQ$MVljZmvUIdFJS7_Im3oKiKzzoHpJhEZkYsMeKXdD5zI"
      scopes: [orders:read]
      default_scopes: [orders:read]
      audiences: [orders-api]
`)
    for (const t of ['unknown', 'a.b.c', 'eyJhbGciOiJub25lIn0.e30.']) expect((await revoke(url, t)).status).toBe(200)
    const t = await token(url)
    expect((await send(url, { method: 'POST', path: '/oauth2/revoke', headers: [FORM], body: `token=${t}` })).status).toBe(401)
    const otherAuth = `Basic ${Buffer.from('other-client:demo-secret-change-me').toString('base64')}`
    const refused = await revoke(url, t, otherAuth)
    expect(refused.status).toBe(400)
    expect((await send(url, { path: '/orders/1', headers: [bearer(t)] })).status).toBe(200)
  })

  it('denials outlive a reload', async () => {
    const { url, file, text } = await quickstart()
    const t = await token(url)
    await revoke(url, t)
    const env = { GATEWAY_LISTEN: new URL(url).host, ADMIN_LISTEN: '127.0.0.1:0', PUBLIC_URL: url }
    running!.setConfig(await compileConfig(parseConfig(text, file, env), { previous: running!.current }))
    expect((await send(url, { path: '/orders/1', headers: [bearer(t)] })).status).toBe(401)
  })

  it('reaches every worker of a multi-process gateway', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gw-revoke-'))
    await writeFile(join(dir, 'as.pem'), generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string)
    const [port, adminPort] = [await freePort(), await freePort()]
    const url = `http://127.0.0.1:${port}`
    const text = (await readFile('config/gateway.yaml', 'utf8'))
      .replace('  token_lifetime: 10m\n', '  token_lifetime: 10m\n  keys: [{ file: as.pem, kid: as-1 }]\n')
      .replace('server:\n', 'server:\n  workers: 2\n  drain_timeout: 2s\n')
      .replace('issuers:\n', 'revocation: { api_token: "operator-token-0123456789-0123456789" }\n\nissuers:\n')
    const file = join(dir, 'gateway.yaml')
    await writeFile(file, text)
    const gateway = await spawnGateway(file, { env: { GATEWAY_LISTEN: `127.0.0.1:${port}`, ADMIN_LISTEN: `127.0.0.1:${adminPort}`, PUBLIC_URL: url }, listening: 2 })
    try {
      const t = await token(url)
      const before = await Promise.all(Array.from({ length: 20 }, () => send(url, { path: '/orders/1', headers: [bearer(t)] })))
      expect(before.map((r) => r.status)).toEqual(Array(20).fill(200))
      expect((await revoke(url, t)).status).toBe(200)
      await new Promise((r) => setTimeout(r, 100)) // the primary relays it to the other worker
      const after = await Promise.all(Array.from({ length: 20 }, () => send(url, { path: '/orders/1', headers: [bearer(t)] })))
      expect(after.map((r) => r.status)).toEqual(Array(20).fill(401))
      await new Promise((r) => setTimeout(r, 300)) // request lines are written in batches
      const servedBy = new Set(gateway.output().split('\n').filter((l) => l.includes('"msg":"request"') && l.includes('token_revoked')).map((l) => (JSON.parse(l) as { worker: number }).worker))
      expect(servedBy).toEqual(new Set([1, 2]))

      // The operator API on the primary's admin listener reaches every worker too.
      const second = await token(url)
      const admin = `http://127.0.0.1:${adminPort}`
      const auth: [string, string] = ['Authorization', 'Bearer operator-token-0123456789-0123456789']
      const made = await send(admin, { method: 'POST', path: '/revocations', headers: [auth, ['Content-Type', 'application/json']], body: JSON.stringify({ token: second }) })
      expect(made.status).toBe(201)
      await new Promise((r) => setTimeout(r, 100))
      const refused = await Promise.all(Array.from({ length: 20 }, () => send(url, { path: '/orders/1', headers: [bearer(second)] })))
      expect(refused.map((r) => r.status)).toEqual(Array(20).fill(401))
      const listed = (await send(admin, { path: '/revocations', headers: [auth] })).json<{ count: number }>()
      expect(listed.count).toBe(2)
    } finally {
      gateway.signal('SIGTERM')
    }
    expect(await gateway.exited).toBe(0)
  }, 30_000)
})
