import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFixture, ISSUER, type Fixture } from '../helpers/fixture.js'
import { bearer, send, type Echoed } from '../helpers/servers.js'

// Identity headers are the gateway's alone: whatever a client sends under
// any spelling a backend could fold into the same name never arrives.

let f: Fixture
beforeAll(async () => {
  f = await startFixture()
})
afterAll(() => f.close())

const SPELLINGS = (name: string): string[] => {
  const lower = name.toLowerCase()
  return [name, lower, name.toUpperCase(), lower.replace(/-/g, '_'), name.replace(/-/g, '_'), lower.replace(/-/g, '.'), 'x_client-id'.replace('client', lower.split('-')[1]!)]
}

const SPOOFABLE = ['X-Client-Id', 'X-Subject', 'X-Scopes', 'X-Issuer']

function spoofHeaders(): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (const name of SPOOFABLE) for (const spelling of SPELLINGS(name)) out.push([spelling, 'attacker'])
  return out
}

/** Every header the upstream got whose folded name is one the gateway owns. */
function owned(echoed: Echoed): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (let i = 0; i < echoed.rawHeaders.length; i += 2) {
    const folded = echoed.rawHeaders[i]!.toLowerCase().replace(/[_.]/g, '-')
    if (SPOOFABLE.map((s) => s.toLowerCase()).includes(folded)) out.push([echoed.rawHeaders[i]!, echoed.rawHeaders[i + 1]!])
  }
  return out
}

describe('spoofed identity headers', () => {
  it('are replaced on a protected route: only the gateway values arrive, once each', async () => {
    const token = await f.token({ client_id: 'real-client', sub: 'real-user' })
    const res = await send(f.gw.url, { path: '/orders/1', headers: [...spoofHeaders(), bearer(token)] })
    expect(res.status).toBe(200)
    const headers = owned(res.json<Echoed>())
    expect(headers.sort()).toEqual(
      [
        ['x-client-id', 'real-client'],
        ['x-issuer', ISSUER],
        ['x-scopes', 'orders:read'],
        ['x-subject', 'real-user'],
      ].sort(),
    )
  })

  it('are removed on a public route, where nothing is added', async () => {
    const res = await send(f.gw.url, { path: '/public/x', headers: spoofHeaders() })
    expect(res.status).toBe(200)
    expect(owned(res.json<Echoed>())).toEqual([])
  })

  it('are not kept when the token lacks the claim (no client_id, no azp)', async () => {
    const token = await f.token({ client_id: undefined })
    const res = await send(f.gw.url, { path: '/orders/1', headers: [['X-Client-Id', 'attacker'], ['x_client_id', 'attacker'], bearer(token)] })
    expect(res.status).toBe(200)
    const echoed = res.json<Echoed>()
    expect(owned(echoed).filter(([k]) => k.toLowerCase().replace(/[_.]/g, '-') === 'x-client-id')).toEqual([])
  })

  it('cannot be dropped by naming them in Connection', async () => {
    const token = await f.token({ client_id: 'real-client' })
    const res = await send(f.gw.url, {
      path: '/orders/1',
      headers: [['Connection', 'keep-alive, X-Client-Id, x-subject, X-Scopes, x-forwarded-for, x-request-id'], bearer(token)],
    })
    expect(res.status).toBe(200)
    const echoed = res.json<Echoed>()
    expect(echoed.headers['x-client-id']).toBe('real-client')
    expect(echoed.headers['x-subject']).toBe('user-1')
    expect(echoed.headers['x-scopes']).toBe('orders:read')
    expect(echoed.headers['x-forwarded-for']).toBe('127.0.0.1')
    expect(echoed.headers['x-request-id']).toBe(res.headers['x-request-id'])
  })

  it('hop-by-hop headers named in Connection are not forwarded', async () => {
    const res = await send(f.gw.url, { path: '/public/x', headers: [['Connection', 'X-Secret-Hop'], ['X-Secret-Hop', 'v'], ['Keep-Alive', 'timeout=5']] })
    const echoed = res.json<Echoed>()
    expect(echoed.headers['x-secret-hop']).toBeUndefined()
    expect(echoed.headers['keep-alive']).toBeUndefined()
  })

  // Method override headers are refused outright on this route: see method-override.test.ts.
  it('forwarding and path override headers never reach the upstream as sent', async () => {
    const token = await f.token()
    const res = await send(f.gw.url, {
      path: '/orders/1',
      headers: [
        bearer(token),
        ['X-Forwarded-For', '10.0.0.1'],
        ['X_Forwarded_For', '10.0.0.2'],
        ['X-Forwarded-Host', 'evil.example'],
        ['X-Forwarded-Proto', 'https'],
        ['Forwarded', 'for=10.0.0.3'],
        ['X-Real-IP', '10.0.0.4'],
        ['X-Original-URL', '/admin/delete'],
        ['X-Rewrite-URL', '/admin/delete'],
      ],
    })
    expect(res.status).toBe(200)
    const h = res.json<Echoed>().headers
    expect(h['x-forwarded-for']).toBe('127.0.0.1')
    expect(h['x-forwarded-proto']).toBe('http')
    expect(h['x-forwarded-host']).toBe(new URL(f.gw.url).host)
    for (const name of ['forwarded', 'x-real-ip', 'x-original-url', 'x-rewrite-url', 'x-http-method-override', 'x_http_method_override', 'x_forwarded_for']) {
      expect(h[name], name).toBeUndefined()
    }
  })

  it('Authorization is forwarded, as sent, only where the route asks for it', async () => {
    const { startGateway } = await import('../helpers/gateway.js')
    const { ISSUER } = await import('../helpers/fixture.js')
    const g = await startGateway(`
upstreams: { up: { url: "${f.upstream.url}" } }
issuers: [{ id: corp, issuer: "${ISSUER}", jwks_uri: "${f.jwks.jwksUri}", audiences: [orders-api] }]
routes:
  - { id: passes, match: { path: /passes }, upstream: up, auth: { issuers: [corp], scopes: none, forward_authorization: true } }
`)
    try {
      const token = await f.token()
      const res = await send(g.url, { path: '/passes', headers: [bearer(token), ['Proxy-Authorization', 'Basic abc']] })
      expect(res.status).toBe(200)
      expect(res.json<Echoed>().headers.authorization).toBe(`Bearer ${token}`)
      expect(res.json<Echoed>().headers['proxy-authorization']).toBeUndefined()
    } finally {
      await g.close()
    }
  })

  it('Authorization and Proxy-Authorization are not forwarded', async () => {
    const token = await f.token()
    const res = await send(f.gw.url, { path: '/orders/1', headers: [bearer(token), ['Proxy-Authorization', 'Basic abc']] })
    const h = res.json<Echoed>().headers
    expect(h.authorization).toBeUndefined()
    expect(h['proxy-authorization']).toBeUndefined()
    const pub = await send(f.gw.url, { path: '/public/x', headers: [bearer(token)] })
    expect(pub.json<Echoed>().headers.authorization).toBeUndefined()
  })
})
