import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildGateway, type Gateway } from '../../src/app.js'
import { compileConfig } from '../../src/config/compile.js'
import { parseConfig } from '../../src/config/load.js'
import { freePort } from '../helpers/redis.js'
import { send } from '../helpers/servers.js'

// The README's quickstart, on the shipped config/gateway.yaml: get a token,
// call a protected route, see 403 where the client lacks the scope.

let gateway: Gateway
let url: string

beforeAll(async () => {
  const port = await freePort()
  url = `http://127.0.0.1:${port}`
  const text = await readFile('config/gateway.yaml', 'utf8')
  const config = await compileConfig(parseConfig(text, 'config/gateway.yaml', { GATEWAY_LISTEN: `127.0.0.1:${port}`, PUBLIC_URL: url }))
  gateway = await buildGateway({ config })
  await gateway.app.listen({ host: config.server.host, port: config.server.port })
})
afterAll(() => gateway.close())

describe('quickstart', () => {
  it('step 5: a DPoP-bound token with a few lines of Node (examples/dpop-client/call.mjs)', async () => {
    const { stdout } = await promisify(execFile)('node', ['examples/dpop-client/call.mjs', url, '/orders/42'])
    expect(stdout).toContain('token_type: DPoP')
    expect(stdout).toMatch(/^DPoP: 200 /m)
    expect(stdout).toMatch(/^as Bearer: 401 /m)
  })

  it('runs the four README steps', async () => {
    // 1. curl -s -u demo-client:demo-secret-change-me -d grant_type=client_credentials $URL/oauth2/token
    const tokenRes = await send(url, {
      method: 'POST',
      path: '/oauth2/token',
      headers: [
        ['Authorization', `Basic ${Buffer.from('demo-client:demo-secret-change-me').toString('base64')}`],
        ['Content-Type', 'application/x-www-form-urlencoded'],
      ],
      body: 'grant_type=client_credentials',
    })
    expect(tokenRes.status).toBe(200)
    const token = tokenRes.json<{ access_token: string }>().access_token

    // 2. curl -H "Authorization: Bearer $TOKEN" $URL/orders/42
    const read = await send(url, { path: '/orders/42', headers: [['Authorization', `Bearer ${token}`], ['X-Client-Id', 'spoofed']] })
    expect(read.status).toBe(200)
    expect(read.json<{ headers: Record<string, string> }>().headers).toMatchObject({ 'x-client-id': 'demo-client', 'x-scopes': 'orders:read' })

    // 3. curl -X POST -H "Authorization: Bearer $TOKEN" $URL/orders
    const write = await send(url, { method: 'POST', path: '/orders', headers: [['Authorization', `Bearer ${token}`]] })
    expect(write.status).toBe(403)
    expect(write.headers['www-authenticate']).toContain('scope="orders:write"')

    // 4. curl -u demo-client:demo-secret-change-me -d "token=$TOKEN" $URL/oauth2/revoke, then the call again: 401
    const revoked = await send(url, {
      method: 'POST',
      path: '/oauth2/revoke',
      headers: [
        ['Authorization', `Basic ${Buffer.from('demo-client:demo-secret-change-me').toString('base64')}`],
        ['Content-Type', 'application/x-www-form-urlencoded'],
      ],
      body: `token=${token}`,
    })
    expect(revoked.status).toBe(200)
    const again = await send(url, { path: '/orders/42', headers: [['Authorization', `Bearer ${token}`]] })
    expect(again.status).toBe(401)
    expect(again.headers['www-authenticate']).toContain('error="invalid_token"')

    expect((await send(url, { path: '/health' })).status).toBe(200)
  })
})
