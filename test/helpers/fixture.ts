import { makeKey, sign, type SignOptions, type TestKey } from './keys.js'
import { startJwksServer, type JwksServer } from './jwks.js'
import { startEchoUpstream, type Echoed, type Listening } from './servers.js'
import { startGateway, type TestGateway } from './gateway.js'
import type { JWTPayload } from 'jose'

export const ISSUER = 'https://auth.test.example'
export const AUDIENCE = 'orders-api'

export interface Fixture {
  keys: Record<'RS256' | 'ES256' | 'EdDSA', TestKey>
  jwks: JwksServer
  upstream: Listening & { received: Echoed[] }
  gw: TestGateway
  /** A token from the trusted issuer with sensible defaults. */
  token(claims?: JWTPayload, options?: SignOptions & { alg?: 'RS256' | 'ES256' | 'EdDSA' }): Promise<string>
  close(): Promise<void>
}

/** The YAML of a typical deployment, pointed at this fixture's servers. */
export function standardConfig(jwksUri: string, upstreamUrl: string, extra = ''): string {
  return `
upstreams:
  orders: { url: "${upstreamUrl}", timeout: 2s }
issuers:
  - id: corp
    issuer: ${ISSUER}
    jwks_uri: ${jwksUri}
    audiences: [${AUDIENCE}, other-api]
    algorithms: [RS256, ES256, EdDSA]
    clock_skew: 5s
    jwks: { cooldown: 1s }
routes:
  - id: orders
    match: { path: /orders/*, methods: [GET, HEAD, POST, DELETE] }
    upstream: orders
    auth:
      issuers: [corp]
      scopes: { all_of: [orders:read] }
      method_scopes:
        POST: { all_of: [orders:write] }
        DELETE: { any_of: [orders:admin, admin] }
  - id: admin
    match: { path: /admin/* }
    upstream: orders
    auth: { issuers: [corp], scopes: { all_of: [admin] } }
  - id: public
    match: { path: /public/* }
    upstream: orders
    auth: public
${extra}`
}

export async function startFixture(configFor: (jwksUri: string, upstreamUrl: string) => string = standardConfig): Promise<Fixture> {
  const keys = {
    RS256: await makeKey('RS256'),
    ES256: await makeKey('ES256'),
    EdDSA: await makeKey('EdDSA'),
  }
  const jwks = await startJwksServer(Object.values(keys).map((k) => k.publicJwk))
  const upstream = await startEchoUpstream()
  const gw = await startGateway(configFor(jwks.jwksUri, upstream.url))
  return {
    keys,
    jwks,
    upstream,
    gw,
    token: (claims = {}, options = {}) =>
      sign(keys[options.alg ?? 'RS256'], { iss: ISSUER, aud: AUDIENCE, sub: 'user-1', client_id: 'client-1', scope: 'orders:read', ...claims }, options),
    async close() {
      await gw.close()
      await upstream.close()
      await jwks.close()
    },
  }
}
