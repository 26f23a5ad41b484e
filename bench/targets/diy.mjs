// Baseline: what teams write by hand: http-proxy + jose jwtVerify + a scope check, every request.
import { readFileSync } from 'node:fs'
import { Agent, createServer } from 'node:http'
import httpProxy from 'http-proxy'
import { createLocalJWKSet, jwtVerify } from 'jose'

const [port, upstream, jwksFile, issuer, audience, scope] = process.argv.slice(2)
const jwks = createLocalJWKSet(JSON.parse(readFileSync(jwksFile, 'utf8')))
const proxy = httpProxy.createProxyServer({ target: upstream, agent: new Agent({ keepAlive: true, maxSockets: 256 }) })
proxy.on('error', (_err, _req, res) => {
  res.writeHead(502)
  res.end()
})
const deny = (res, status) => {
  res.writeHead(status, { 'www-authenticate': 'Bearer' })
  res.end()
}
const server = createServer(async (req, res) => {
  const auth = req.headers.authorization
  if (!auth || !auth.startsWith('Bearer ')) return deny(res, 401)
  try {
    const { payload } = await jwtVerify(auth.slice(7), jwks, { issuer, audience, algorithms: ['RS256', 'ES256', 'EdDSA'] })
    if (typeof payload.scope !== 'string' || !payload.scope.split(' ').includes(scope)) return deny(res, 403)
  } catch {
    return deny(res, 401)
  }
  proxy.web(req, res)
})
server.keepAliveTimeout = 60_000
server.listen(Number(port), '127.0.0.1', () => console.log(`listening ${server.address().port}`))
