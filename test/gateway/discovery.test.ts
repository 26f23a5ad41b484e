import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway } from '../helpers/gateway.js'
import { startIntrospectionServer, type IntrospectionServer } from '../helpers/introspection-server.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { bearer, listen, send, startEchoUpstream, type Listening } from '../helpers/servers.js'

// RFC 8414: jwks_uri and the introspection endpoint found in the issuer's metadata.

let as: IntrospectionServer
let upstream: Listening
let meta: Listening & { hits: string[]; issuerOverride?: string }
let key: TestKey

beforeAll(async () => {
  as = await startIntrospectionServer()
  upstream = await startEchoUpstream()
  key = await makeKey('ES256')
  const state: { hits: string[]; issuerOverride?: string } = { hits: [] }
  const server = await listen((req, res) => {
    state.hits.push(req.url!)
    const base = `http://127.0.0.1:${(req.socket.localPort)}`
    res.setHeader('content-type', 'application/json')
    if (req.url === '/.well-known/oauth-authorization-server/tenant') {
      res.end(JSON.stringify({ issuer: state.issuerOverride ?? `${base}/tenant`, jwks_uri: `${base}/tenant/jwks`, introspection_endpoint: as.endpoint }))
    } else if (req.url === '/tenant/jwks') {
      res.end(JSON.stringify({ keys: [key.publicJwk] }))
    } else {
      res.statusCode = 404
      res.end('{}')
    }
  })
  meta = Object.assign(state, server)
})
afterAll(async () => {
  await as.close()
  await upstream.close()
  await meta.close()
})

const config = () => `
upstreams: { api: { url: "${upstream.url}" } }
issuers:
  - id: t
    issuer: ${meta.url}/tenant
    discovery: true
    audiences: [api]
    introspection: { client_id: gateway, client_secret: "s3cret: +/%" }
routes:
  - { id: r, match: { path: /r }, upstream: api, auth: { issuers: [t], scopes: none } }
`

describe('discovery', () => {
  it('finds the keys and the introspection endpoint at the RFC 8414 well-known URL', async () => {
    meta.issuerOverride = undefined
    const g = await startGateway(config())
    try {
      const jwt = await sign(key, { iss: `${meta.url}/tenant`, aud: 'api' })
      expect((await send(g.url, { path: '/r', headers: [bearer(jwt)] })).status).toBe(200)
      as.tokens.set('opaque-discovered', { active: true, aud: 'api' })
      expect((await send(g.url, { path: '/r', headers: [bearer('opaque-discovered')] })).status).toBe(200)
      expect(as.calls.get('opaque-discovered')).toBe(1)
      expect(meta.hits).toContain('/.well-known/oauth-authorization-server/tenant')
    } finally {
      await g.close()
    }
  })

  it('refuses metadata that names another issuer (fails closed with 503)', async () => {
    meta.issuerOverride = 'https://evil.example'
    const g = await startGateway(config())
    try {
      const jwt = await sign(key, { iss: `${meta.url}/tenant`, aud: 'api' })
      const res = await send(g.url, { path: '/r', headers: [bearer(jwt)] })
      expect(res.status).toBe(503)
      as.tokens.set('opaque-2', { active: true, aud: 'api' })
      expect((await send(g.url, { path: '/r', headers: [bearer('opaque-2')] })).status).toBe(503)
      expect(as.calls.get('opaque-2')).toBeUndefined()
    } finally {
      await g.close()
      meta.issuerOverride = undefined
    }
  })
})
