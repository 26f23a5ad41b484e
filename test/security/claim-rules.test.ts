import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { compileConfig } from '../../src/config/compile.js'
import { parseConfig } from '../../src/config/load.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { startIntrospectionServer, type IntrospectionServer } from '../helpers/introspection-server.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { bearer, send, startEchoUpstream, type Echoed, type Listening } from '../helpers/servers.js'

// Claim rules refuse (403 claim_rule_failed, nothing forwarded) every token
// that does not satisfy them, whatever the spelling of the path, the type of
// the claim, or the way the token was authenticated (JWT, cached JWT,
// introspection, cached introspection). The rule's id is logged and counted,
// never sent.

const ISS = 'https://rules.test.example'
let upstream: Listening & { received: Echoed[] }
let as: IntrospectionServer
let jwks: JwksServer
let key: TestKey
let g: TestGateway

const ROUTES = `
routes:
  - id: tenants
    match: { path: "/tenants/:tenant/*" }
    upstream: api
    auth:
      issuers: [corp]
      scopes: { all_of: [read] }
      claims:
        - { id: own-tenant, claim: tenant, matches_path_param: tenant }
  - id: groups
    match: { path: /groups/* }
    upstream: api
    auth:
      issuers: [corp]
      scopes: none
      claims:
        - id: staff
          any_of:
            - { claim: realm_access.roles, contains: staff }
            - { claim: '"https://corp.example/level"', one_of: [3, 4] }
        - id: not-suspended
          not: { claim: suspended, equals: true }
        - { id: verified, claim: email_verified, exists: true }
        - { id: corp-mail, claim: email, matches: '[a-z0-9._-]+@corp\\.example' }
  - id: opaque
    match: { path: "/opaque/:tenant/*" }
    upstream: api
    auth:
      issuers: [opaque]
      scopes: none
      claims:
        - { id: own-tenant, claim: client_id, matches_path_param: tenant }
        - { id: gold, claim: plan, equals: gold }
`

function config(routes = ROUTES): string {
  return `
upstreams: { api: { url: "${upstream.url}" } }
issuers:
  - { id: corp, issuer: ${ISS}, jwks_uri: ${jwks.jwksUri}, audiences: [api] }
  - id: opaque
    issuer: https://opaque.test.example
    audiences: [api]
    introspection: { endpoint: "${as.endpoint}", client_id: gateway, client_secret: "s3cret: +/%" }
${routes}`
}

beforeAll(async () => {
  upstream = await startEchoUpstream()
  as = await startIntrospectionServer()
  key = await makeKey('ES256')
  jwks = await startJwksServer([key.publicJwk])
  g = await startGateway(config())
})
afterAll(async () => {
  await g.close()
  await upstream.close()
  await as.close()
  await jwks.close()
})

const token = (claims: Record<string, unknown>) => sign(key, { iss: ISS, aud: 'api', sub: 'u1', scope: 'read', exp: Math.floor(Date.now() / 1000) + 600, ...claims })
let n = 0
function opaque(claims: Record<string, unknown>): string {
  const t = `opaque-${++n}-${Math.random().toString(36).slice(2)}`
  as.tokens.set(t, { active: true, iss: 'https://opaque.test.example', aud: 'api', exp: Math.floor(Date.now() / 1000) + 600, ...claims })
  return t
}

async function expectRefused(path: string, t: string, rule: string) {
  const before = upstream.received.length
  const res = await send(g.url, { path, headers: [bearer(t)] })
  expect(res.status, path).toBe(403)
  expect(res.json()).toMatchObject({ error: 'access_denied' })
  expect(res.body).not.toContain(rule)
  expect(JSON.stringify(res.headers)).not.toContain(rule)
  const line = await g.requestLog(res.headers['x-request-id'])
  expect(line).toMatchObject({ reason: 'claim_rule_failed', rule })
  expect(upstream.received.length).toBe(before)
}

async function expectAllowed(path: string, t: string) {
  const res = await send(g.url, { path, headers: [bearer(t)] })
  expect(res.status, path).toBe(200)
}

describe('matches_path_param', () => {
  it('the token of tenant acme reaches /tenants/acme, and only it', async () => {
    const t = await token({ tenant: 'acme' })
    await expectAllowed('/tenants/acme/orders', t)
    await expectAllowed('/tenants/acme', t)
    // Twice: the second answer comes from the verified-token cache, which must keep the claim.
    await expectAllowed('/tenants/acme/orders', t)
    for (const path of ['/tenants/other/orders', '/tenants/ACME/orders', '/tenants/acme2/x', '/tenants/acm/x', '/tenants/acme%20/x', '/tenants/acme.json/x']) {
      await expectRefused(path, t, 'own-tenant')
    }
    // Paths that cannot be one segment are refused before any rule (400).
    for (const path of ['/tenants/acme%2F/x', '/tenants/acme%00/x', '/tenants/acme;x/y', '/tenants/%FF/x', '/tenants/%E0%A4%A/x']) expect((await send(g.url, { path, headers: [bearer(t)] })).status).toBe(400)
  })

  it('spellings of the same segment are the same segment', async () => {
    const t = await token({ tenant: 'acme' })
    for (const path of ['/tenants/%61cme/x', '/tenants/ac%6De/x', '//tenants//acme//x', '/tenants/./acme/x', '/tenants/x/../acme/y']) await expectAllowed(path, t)
  })

  it('a tenant segment holding encoded characters matches the claim decoded', async () => {
    await expectAllowed('/tenants/a%20b%C3%A9/x', await token({ tenant: 'a b\u00e9' }))
    await expectRefused('/tenants/a%2520b/x', await token({ tenant: 'a b' }), 'own-tenant')
    await expectRefused('/tenants/a/b/x', await token({ tenant: 'a/b' }), 'own-tenant')
  })

  it('a claim of another type, a list, an object or absent never matches', async () => {
    for (const tenant of [['acme'], { acme: true }, 1, true, null, '']) await expectRefused('/tenants/acme/x', await token({ tenant }), 'own-tenant')
    await expectRefused('/tenants/1/x', await token({ tenant: 1 }), 'own-tenant')
    await expectRefused('/tenants/acme/x', await token({}), 'own-tenant')
  })
})

describe('operators and combinators', () => {
  const staff = { realm_access: { roles: ['staff', 'dev'] }, email_verified: true, email: 'ann@corp.example' }
  it('a token satisfying every rule passes', async () => {
    await expectAllowed('/groups/1', await token(staff))
    await expectAllowed('/groups/1', await token({ ...staff, realm_access: { roles: 'staff' } }))
    await expectAllowed('/groups/1', await token({ ...staff, realm_access: {}, 'https://corp.example/level': 4 }))
  })
  it('any_of fails when neither branch holds, whatever the shape of the claims', async () => {
    for (const variant of [
      { realm_access: { roles: ['Staff'] } },
      { realm_access: { roles: ['staff '] } },
      { realm_access: { roles: 'staff dev' } },
      { realm_access: [{ roles: ['staff'] }] },
      { realm_access: { roles: [['staff']] } },
      { 'realm_access.roles': ['staff'] },
      { realm_access: {}, 'https://corp.example/level': '4' },
      { realm_access: {}, 'https://corp.example/level': 5 },
      { realm_access: {}, https: { '//corp': { example: { '/level': 4 } } } },
    ]) {
      await expectRefused('/groups/1', await token({ ...staff, realm_access: undefined, ...variant }), 'staff')
    }
  })
  it('a path never follows inherited properties', async () => {
    await expectRefused('/groups/1', await token({ ...staff, realm_access: JSON.parse('{"__proto__": {"roles": ["staff"]}}') }), 'staff')
  })
  it('not, exists and matches fail closed', async () => {
    await expectRefused('/groups/1', await token({ ...staff, suspended: true }), 'not-suspended')
    await expectAllowed('/groups/1', await token({ ...staff, suspended: 'true' }))
    await expectRefused('/groups/1', await token({ ...staff, email_verified: undefined }), 'verified')
    await expectRefused('/groups/1', await token({ ...staff, email_verified: null }), 'verified')
    for (const email of ['ann@corp.example.evil', 'ann@corpXexample', 'x ann@corp.example', 'ann@corp.example\n', ['ann@corp.example'], 'a'.repeat(2000) + '@corp.example']) {
      await expectRefused('/groups/1', await token({ ...staff, email }), 'corp-mail')
    }
  })
  it('each refusal is counted by route and rule', () => {
    expect(g.gateway.metrics.claimRuleDenials.value(['groups', 'corp-mail'])).toBeGreaterThanOrEqual(6)
    expect(g.gateway.metrics.claimRuleDenials.value(['tenants', 'own-tenant'])).toBeGreaterThan(0)
  })
})

describe('on introspection routes', () => {
  it('rules read the introspection answer, fresh and cached', async () => {
    const t = opaque({ client_id: 'acme', plan: 'gold' })
    await expectAllowed('/opaque/acme/x', t)
    await expectAllowed('/opaque/acme/x', t)
    expect(as.calls.get(t)).toBe(1)
    await expectRefused('/opaque/other/x', t, 'own-tenant')
    await expectRefused('/opaque/acme/x', opaque({ client_id: 'acme', plan: 'silver' }), 'gold')
    await expectRefused('/opaque/acme/x', opaque({ client_id: 'acme' }), 'gold')
  })
})

describe('on reload', () => {
  it('a rule on a claim the cache did not keep before sees the claim (cached results are not reused)', async () => {
    const local = await startGateway(config(`
routes:
  - { id: plain, match: { path: /p/* }, upstream: api, auth: { issuers: [corp], scopes: none } }
  - { id: plain-opaque, match: { path: /o/* }, upstream: api, auth: { issuers: [opaque], scopes: none } }
`))
    try {
      const jwt = await token({ dept: 'sales' })
      const op = opaque({ dept: 'sales' })
      expect((await send(local.url, { path: '/p/1', headers: [bearer(jwt)] })).status).toBe(200)
      expect((await send(local.url, { path: '/o/1', headers: [bearer(op)] })).status).toBe(200)
      const yaml = config(`
routes:
  - { id: plain, match: { path: /p/* }, upstream: api, auth: { issuers: [corp], scopes: none, claims: [{ claim: dept, equals: sales }] } }
  - { id: plain-opaque, match: { path: /o/* }, upstream: api, auth: { issuers: [opaque], scopes: none, claims: [{ claim: dept, equals: sales }] } }
`)
      local.gateway.setConfig(await compileConfig(parseConfig(yaml, `${local.dir}/gateway.yaml`), { previous: local.gateway.current }))
      expect((await send(local.url, { path: '/p/1', headers: [bearer(jwt)] })).status).toBe(200)
      expect((await send(local.url, { path: '/o/1', headers: [bearer(op)] })).status).toBe(200)
      const other = await token({ dept: 'hr' })
      expect((await send(local.url, { path: '/p/1', headers: [bearer(other)] })).status).toBe(403)
    } finally {
      await local.close()
    }
  })
})
