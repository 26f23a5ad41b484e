// Baseline: DPoP done by hand, as a team would with node:https and jose:
// the access token verified with jwtVerify, the proof with jwtVerify and
// EmbeddedJWK, htm, htu, iat, ath and the key thumbprint against cnf.jkt
// checked, jti remembered in a Map; then proxied. Every request.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Agent } from 'node:http'
import { createServer } from 'node:https'
import httpProxy from 'http-proxy'
import { calculateJwkThumbprint, createLocalJWKSet, EmbeddedJWK, jwtVerify } from 'jose'

const [port, upstream, jwksFile, issuer, audience, certFile, keyFile] = process.argv.slice(2)
const jwks = createLocalJWKSet(JSON.parse(readFileSync(jwksFile, 'utf8')))
const proxy = httpProxy.createProxyServer({ target: upstream, agent: new Agent({ keepAlive: true, maxSockets: 256 }) })
proxy.on('error', (_err, _req, res) => {
  res.writeHead(502)
  res.end()
})
const seen = new Map()
const deny = (res) => {
  res.writeHead(401, { 'www-authenticate': 'DPoP' })
  res.end()
}
const server = createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, async (req, res) => {
  const auth = req.headers.authorization
  const proof = req.headers.dpop
  if (!auth?.startsWith('DPoP ') || typeof proof !== 'string') return deny(res)
  const token = auth.slice(5)
  try {
    const { payload } = await jwtVerify(token, jwks, { issuer, audience, algorithms: ['RS256', 'ES256'] })
    const { payload: p, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256', 'RS256', 'EdDSA'], maxTokenAge: '60s' })
    const now = Math.floor(Date.now() / 1000)
    if (p.htm !== req.method || p.htu !== `https://${req.headers.host}${req.url.split('?')[0]}` || Math.abs(now - p.iat) > 60) return deny(res)
    if (p.ath !== createHash('sha256').update(token).digest('base64url')) return deny(res)
    if (payload.cnf?.jkt !== (await calculateJwkThumbprint(protectedHeader.jwk))) return deny(res)
    if (seen.has(p.jti)) return deny(res)
    seen.set(p.jti, now)
    if (seen.size > 1_000_000) seen.clear()
  } catch {
    return deny(res)
  }
  proxy.web(req, res)
})
server.keepAliveTimeout = 60_000
server.listen(Number(port), '127.0.0.1', () => console.log(`listening ${server.address().port}`))
