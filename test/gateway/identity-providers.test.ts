import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { compileConfig } from '../../src/config/compile.js'
import { parseConfig } from '../../src/config/load.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { makeKey, type TestKey } from '../helpers/keys.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { bearer, send, startEchoUpstream, type Echoed, type Listening } from '../helpers/servers.js'
import { SignJWT } from 'jose'

// docs/identity-providers.md: every configuration in it validates, and the
// Keycloak one accepts a token of Keycloak's exact shape (generated here).

const cookbook = readFileSync('docs/identity-providers.md', 'utf8')
const blocks = [...cookbook.matchAll(/^## (.+)\n[\s\S]*?```yaml\n([\s\S]*?)```/gm)].map((m) => ({ provider: m[1]!, yaml: m[2]! }))

describe('the identity-provider cookbook', () => {
  it('has a configuration for Keycloak, Auth0, Okta and Entra ID', () => {
    expect(blocks.map((b) => b.provider)).toEqual(['Keycloak', 'Auth0', 'Okta', 'Microsoft Entra ID'])
  })
  for (const { provider, yaml } of blocks) {
    it(`the ${provider} configuration passes validate`, async () => {
      const config = await compileConfig(parseConfig(yaml, `${provider}.yaml`))
      expect(config.router.routes.length).toBeGreaterThan(0)
      expect(config.warnings).toEqual([])
    })
  }
})

describe('Keycloak, end to end', () => {
  let key: TestKey
  let jwks: JwksServer
  let upstream: Listening & { received: Echoed[] }
  let g: TestGateway
  const ISS = 'https://sso.example.com/realms/acme'
  beforeAll(async () => {
    key = await makeKey('RS256')
    jwks = await startJwksServer([key.publicJwk])
    upstream = await startEchoUpstream()
    const yaml = blocks[0]!.yaml.replace(/jwks_uri: \S+/, `jwks_uri: ${jwks.jwksUri}`).replace('https://orders.internal:8443', upstream.url)
    g = await startGateway(yaml)
  })
  afterAll(async () => {
    await g.close()
    await upstream.close()
    await jwks.close()
  })

  /** A Keycloak access token as its token endpoint issues one (header typ JWT, payload typ Bearer, roles in their own claims). */
  const keycloakToken = (claims: Record<string, unknown>) => {
    const now = Math.floor(Date.now() / 1000)
    return new SignJWT({
      exp: now + 300,
      iat: now,
      auth_time: now - 10,
      jti: 'onrtac:6b1f0e44-9d6c-4f6e-a0f1-2c3d4e5f6a7b',
      iss: ISS,
      aud: ['orders-api', 'account'],
      sub: 'f7a3c9e2-1b4d-4e8f-9a6c-0d2e3f4a5b6c',
      typ: 'Bearer',
      azp: 'orders-web',
      sid: '0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f',
      acr: '1',
      'allowed-origins': ['https://orders.example.com'],
      realm_access: { roles: ['default-roles-acme', 'offline_access', 'uma_authorization'] },
      resource_access: { account: { roles: ['manage-account', 'view-profile'] } },
      scope: 'openid email profile',
      email_verified: true,
      preferred_username: 'alice',
      ...claims,
    })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: key.kid })
      .sign(key.privateKey)
  }

  it('accepts a realm or client role as the required scope, and forwards the client (azp) and subject', async () => {
    const withClientRole = await keycloakToken({ resource_access: { 'orders-api': { roles: ['orders-reader'] } } })
    const res = await send(g.url, { path: '/orders/1', headers: [bearer(withClientRole)] })
    expect(res.status).toBe(200)
    expect(res.json<Echoed>().headers).toMatchObject({ 'x-client-id': 'orders-web', 'x-subject': 'f7a3c9e2-1b4d-4e8f-9a6c-0d2e3f4a5b6c' })
    expect(res.json<Echoed>().headers['x-scopes']).toContain('orders-reader')
    const withRealmRole = await keycloakToken({ realm_access: { roles: ['orders:read'] } })
    expect((await send(g.url, { path: '/orders/1', headers: [bearer(withRealmRole)] })).status).toBe(200)
  })

  it('refuses what is not an access token for this API: an ID token (aud is the client) and a refresh token (aud is the issuer)', async () => {
    const idToken = await keycloakToken({ typ: 'ID', aud: 'orders-web', nonce: 'n-0S6_WzA2Mj', resource_access: { 'orders-api': { roles: ['orders-reader'] } } })
    const refresh = await keycloakToken({ typ: 'Refresh', aud: ISS, resource_access: { 'orders-api': { roles: ['orders-reader'] } } })
    for (const token of [idToken, refresh]) {
      const res = await send(g.url, { path: '/orders/1', headers: [bearer(token)] })
      expect(res.status).toBe(401)
      expect((await g.requestLog(res.headers['x-request-id'])).reason).toBe('audience_invalid')
    }
  })

  it('refuses a token without the role (403) and one without the audience mapper (401)', async () => {
    expect((await send(g.url, { path: '/orders/1', headers: [bearer(await keycloakToken({}))] })).status).toBe(403)
    const noAudience = await keycloakToken({ aud: 'account', resource_access: { 'orders-api': { roles: ['orders-reader'] } } })
    const res = await send(g.url, { path: '/orders/1', headers: [bearer(noAudience)] })
    expect(res.status).toBe(401)
    expect((await g.requestLog(res.headers['x-request-id'])).reason).toBe('audience_invalid')
  })
})
