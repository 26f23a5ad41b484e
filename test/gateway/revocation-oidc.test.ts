import { createServer, type Server } from 'node:http'
import { randomBytes } from 'node:crypto'
import { exportJWK, generateKeyPair } from 'jose'
import Provider from 'oidc-provider'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { freePort } from '../helpers/redis.js'
import { bearer, send } from '../helpers/servers.js'

// Interop with a real authorization server (oidc-provider): a token revoked
// there (RFC 7009) stops working at the gateway within the bound the
// configuration sets for it (introspection.max_ttl), as `validate` states.

let issuer: string
let op: Server
let gw: TestGateway
const APP = { id: 'app', secret: 'app-secret-0123456789-0123456789' }
const GATEWAY = { id: 'gateway', secret: 'gateway-secret-0123456789-012345' }

beforeAll(async () => {
  const port = await freePort()
  issuer = `http://127.0.0.1:${port}`
  const { privateKey } = await generateKeyPair('ES256', { extractable: true })
  const provider = new Provider(issuer, {
    clients: [
      { client_id: APP.id, client_secret: APP.secret, grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: 'orders:read', id_token_signed_response_alg: 'ES256' },
      { client_id: GATEWAY.id, client_secret: GATEWAY.secret, grant_types: ['client_credentials'], response_types: [], redirect_uris: [], id_token_signed_response_alg: 'ES256' },
    ],
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: 'op', alg: 'ES256', use: 'sig' }] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    scopes: ['orders:read'],
    features: { devInteractions: { enabled: false }, clientCredentials: { enabled: true }, introspection: { enabled: true }, revocation: { enabled: true } },
  })
  op = createServer(provider.callback())
  await new Promise<void>((resolve) => op.listen(port, '127.0.0.1', resolve))
  gw = await startGateway(`
upstreams: { api: { echo: true } }
issuers:
  - id: op
    issuer: ${issuer}
    audiences: [api]
    introspection:
      endpoint: ${issuer}/token/introspection
      client_id: ${GATEWAY.id}
      client_secret: ${GATEWAY.secret}
      require_audience: false
      max_ttl: 2s
routes:
  - { id: orders, match: { path: /orders/* }, upstream: api, auth: { issuers: [op], scopes: { all_of: [orders:read] } } }
`)
})
afterAll(async () => {
  await gw?.close()
  await new Promise((r) => op?.close(r))
})

const basic = (c: { id: string; secret: string }) => `Basic ${Buffer.from(`${c.id}:${c.secret}`).toString('base64')}`

describe('revocation at oidc-provider', () => {
  it('takes effect at the gateway within introspection.max_ttl', async () => {
    const issued = await fetch(`${issuer}/token`, { method: 'POST', headers: { authorization: basic(APP), 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials&scope=orders:read' })
    const { access_token: token } = (await issued.json()) as { access_token: string }
    expect((await send(gw.url, { path: '/orders/1', headers: [bearer(token)] })).status).toBe(200)
    const revoked = await fetch(`${issuer}/token/revocation`, { method: 'POST', headers: { authorization: basic(APP), 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${token}` })
    expect(revoked.status).toBe(200)
    const started = Date.now()
    let status = 200
    while (status === 200 && Date.now() - started < 5000) {
      status = (await send(gw.url, { path: '/orders/1', headers: [bearer(token)] })).status
      if (status === 200) await new Promise((r) => setTimeout(r, 50))
    }
    expect(status).toBe(401)
    // Within the configured bound (2 s), with room for the clock's second granularity.
    expect(Date.now() - started).toBeLessThanOrEqual(3000)
  })
})
