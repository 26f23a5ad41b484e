// A service behind the gateway that trusts identity assertions, not the network.
//
//   GATEWAY_JWKS=http://127.0.0.1:9090/.well-known/gateway-jwks.json \
//   ASSERTION_ISSUER=https://gateway.example ASSERTION_AUDIENCE=orders \
//   node examples/verify-assertion/verify.mjs 8081
//
// Only jose is needed. Requests without a valid assertion for this service
// are refused, whatever identity headers they carry.
import { createHash } from 'node:crypto'
import { createServer } from 'node:http'
import { createRemoteJWKSet, jwtVerify } from 'jose'

/**
 * Verifies the X-Gateway-Assertion of a request: signature (keys from the
 * gateway's JWKS), issuer, audience (this service's id: an assertion made
 * for another service is refused), type and lifetime; and, when the
 * assertion is bound to the request (bind_request), its method, path and query.
 * Returns the claims, or throws.
 */
export function assertionVerifier({ jwksUrl, issuer, audience, cacheMaxAge = 60_000 }) {
  // Keys are refetched at least as often as the gateway's Cache-Control says (60 s): a key published
  // for rotation is known here before the gateway signs with it.
  const keys = createRemoteJWKSet(new URL(jwksUrl), { cacheMaxAge, cooldownDuration: Math.min(5_000, cacheMaxAge) })
  return async function verify(req) {
    const assertion = req.headers['x-gateway-assertion']
    if (typeof assertion !== 'string') throw new Error('no assertion')
    const { payload } = await jwtVerify(assertion, keys, { issuer, audience, typ: 'gateway-assertion+jwt', algorithms: ['EdDSA', 'ES256'], maxTokenAge: '5m' })
    if (payload.htm !== undefined) {
      const url = new URL(req.url, 'http://service')
      const query = createHash('sha256').update(url.search.slice(1)).digest('base64url')
      if (payload.htm !== req.method || payload.htp !== url.pathname || payload.htq !== query) throw new Error('the assertion is for another request')
    }
    return payload
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const verify = assertionVerifier({ jwksUrl: process.env.GATEWAY_JWKS, issuer: process.env.ASSERTION_ISSUER, audience: process.env.ASSERTION_AUDIENCE })
  const port = Number(process.argv[2] ?? 8081)
  createServer((req, res) => {
    verify(req).then(
      (claims) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ hello: claims.sub, client_id: claims.client_id, scope: claims.scope })),
      (err) => res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'unauthorized', error_description: err.message })),
    )
  }).listen(port, '127.0.0.1', () => console.log(`verify-assertion service on http://127.0.0.1:${port}`))
}
