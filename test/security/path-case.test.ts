import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFixture, ISSUER, AUDIENCE, type Fixture } from '../helpers/fixture.js'
import { bearer, send, type Echoed } from '../helpers/servers.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'

// Backends that read paths case-insensitively (IIS, some Spring setups,
// case-insensitive file systems) would serve "/api/ADMIN" as "/api/admin".
// With server.case_insensitive_paths the gateway folds before matching and
// forwards the folded path, so no spelling of a guarded path escapes its rule.

let f: Fixture
let folding: TestGateway
const routes = (jwks: string, up: string, server = '') => `
${server}
upstreams: { up: { url: "${up}" } }
issuers: [{ id: corp, issuer: "${ISSUER}", jwks_uri: "${jwks}", audiences: [${AUDIENCE}] }]
routes:
  - { id: admin, match: { path: /api/Admin/* }, upstream: up, auth: { issuers: [corp], scopes: { all_of: [admin] } } }
  - { id: public, match: { path: /api/* }, upstream: up, auth: public }
`
beforeAll(async () => {
  f = await startFixture((jwks, up) => routes(jwks, up))
  folding = await startGateway(routes(f.jwks.jwksUri, f.upstream.url, 'server: { case_insensitive_paths: true }'))
})
afterAll(async () => {
  await folding.close()
  await f.close()
})

describe('case_insensitive_paths', () => {
  for (const path of ['/api/admin/users', '/api/ADMIN/users', '/API/Admin/users', '/api/aDmIn/users', '/api/%41dmin/users']) {
    it(`${path} is held to the admin rule and forwarded folded`, async () => {
      const before = f.upstream.received.length
      const anon = await send(folding.url, { path })
      expect(anon.status).toBe(401)
      expect(f.upstream.received.length).toBe(before)
      const ok = await send(folding.url, { path, headers: [bearer(await f.token({ scope: 'admin' }))] })
      expect(ok.status).toBe(200)
      expect(ok.json<Echoed>().url).toBe('/api/admin/users')
    })
  }

  it('percent-encodings keep their upper-case hex', async () => {
    const res = await send(folding.url, { path: '/API/Caf%C3%A9' })
    expect(res.json<Echoed>().url).toBe('/api/caf%C3%A9')
  })

  it('without it, matching is case-sensitive (the risk the option exists for)', async () => {
    const res = await send(f.gw.url, { path: '/api/ADMIN/users' })
    expect(res.status).toBe(200) // served by the public route: only safe if the upstream is case-sensitive too
  })
})
