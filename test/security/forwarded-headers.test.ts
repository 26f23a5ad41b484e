import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFixture, standardConfig, type Fixture } from '../helpers/fixture.js'
import { bearer, send, type Echoed } from '../helpers/servers.js'

// Headers that proxies, load balancers and identity layers set for their
// upstreams are the gateway's alone, by family rather than by a list of
// names: every X-Forwarded-*, Forwarded, the client-address family, the
// identity-layer families, in every spelling a backend may fold together.

let f: Fixture
beforeAll(async () => {
  f = await startFixture((jwks, up) =>
    standardConfig(jwks, up, `identity_headers:\n  strip_request_headers: [X-Tenant-Admin, X-Internal-*]\n`),
  )
})
afterAll(() => f.close())

/** Names from the attack review and their relatives. */
const TRUSTED_BY_UPSTREAMS = [
  'X-Forwarded-User',
  'X-Forwarded-Email',
  'X-Forwarded-Groups',
  'X-Forwarded-Preferred-Username',
  'X-Forwarded-Access-Token',
  'X-Forwarded-Client-Cert',
  'X-Forwarded-Ssl',
  'X-Forwarded-Scheme',
  'X-Forwarded-Uri',
  'X-Forwarded-Path',
  'X-Forwarded-Anything-New',
  'X-Forwarded',
  'Forwarded',
  'True-Client-IP',
  'X-Client-IP',
  'CF-Connecting-IP',
  'X-Cluster-Client-IP',
  'X-Real-IP',
  'Fastly-Client-IP',
  'Akamai-Client-IP',
  'X-Azure-ClientIP'.replace('ClientIP', 'Client-IP'),
  'X-Originating-IP',
  'X-Remote-IP',
  'X-Remote-Addr',
  'X-Remote-User',
  'X-Original-URL',
  'X-Original-Method',
  'X-Rewrite-URL',
  'X-Auth-Request-User',
  'X-Auth-Request-Email',
  'X-Authenticated-User',
  'X-User-Id',
  'X-Consumer-Username',
  'X-Credential-Identifier',
  'X-Userinfo',
  'X-Amzn-Oidc-Identity',
  'X-MS-CLIENT-PRINCIPAL-NAME',
  'X-Goog-Authenticated-User-Email',
  'X-SSL-Client-Verify',
  'X-Gateway-Assertion',
  'X-Envoy-External-Address',
  'X-Client-Id',
  'X-Subject',
  'X-Scopes',
  'X-Issuer',
  // operator additions
  'X-Tenant-Admin',
  'X-Internal-Role',
]

function spellings(name: string): string[] {
  const lower = name.toLowerCase()
  return [name, lower, name.toUpperCase(), lower.replace(/-/g, '_'), name.replace(/-/g, '.'), lower.replace(/-/g, '~'), name.replace(/-/, '_')]
}

const fold = (n: string) => n.toLowerCase().replace(/[^a-z0-9]/g, '-')
const FOLDED = new Set(TRUSTED_BY_UPSTREAMS.map(fold))

/** Every header the upstream got whose folded name is one of the names above, with its value. */
function arrived(echoed: Echoed): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (let i = 0; i < echoed.rawHeaders.length; i += 2) {
    if (FOLDED.has(fold(echoed.rawHeaders[i]!))) out.push([echoed.rawHeaders[i]!, echoed.rawHeaders[i + 1]!])
  }
  return out
}

const spoofed = (): Array<[string, string]> => TRUSTED_BY_UPSTREAMS.flatMap((n) => spellings(n).map((s): [string, string] => [s, 'attacker']))

describe('headers upstreams trust', () => {
  it('never arrive as the client sent them on a public route, in any spelling', async () => {
    const res = await send(f.gw.url, { path: '/public/x', headers: [...spoofed(), ['X-App-Hint', 'kept'], ['Accept', 'application/json']] })
    expect(res.status).toBe(200)
    const echoed = res.json<Echoed>()
    expect(arrived(echoed).filter(([, v]) => v === 'attacker')).toEqual([])
    // Ordinary application headers still go through.
    expect(echoed.headers['x-app-hint']).toBe('kept')
    expect(echoed.headers.accept).toBe('application/json')
  })

  it('never arrive as the client sent them on a protected route; the gateway sets its own', async () => {
    const token = await f.token({ client_id: 'real-client', sub: 'real-user' })
    const res = await send(f.gw.url, { path: '/orders/1', headers: [...spoofed(), bearer(token)] })
    expect(res.status).toBe(200)
    const echoed = res.json<Echoed>()
    expect(arrived(echoed).filter(([, v]) => v === 'attacker')).toEqual([])
    expect(echoed.headers['x-client-id']).toBe('real-client')
    expect(echoed.headers['x-subject']).toBe('real-user')
    expect(echoed.headers['x-forwarded-for']).toBe('127.0.0.1')
  })

  it('cannot be kept by listing them in Connection (they go, and the gateway values stay)', async () => {
    const token = await f.token({ client_id: 'real-client' })
    const res = await send(f.gw.url, { path: '/orders/1', headers: [['Connection', 'x-forwarded-for, x-client-id'], ['X-Forwarded-User', 'attacker'], bearer(token)] })
    const h = res.json<Echoed>().headers
    expect(h['x-forwarded-user']).toBeUndefined()
    expect(h['x-client-id']).toBe('real-client')
    expect(h['x-forwarded-for']).toBe('127.0.0.1')
  })
})

describe('operator additions', () => {
  it('cannot name a header the gateway must be able to send', async () => {
    const { compileConfig } = await import('../../src/config/compile.js')
    const { parseConfig } = await import('../../src/config/load.js')
    const yaml = standardConfig(f.jwks.jwksUri, f.upstream.url, 'identity_headers:\n  client_id: X-Forwarded-For\n')
    await expect(compileConfig(parseConfig(yaml, 'g.yaml'))).rejects.toThrow(/cannot hand over to identity/)
  })
})
