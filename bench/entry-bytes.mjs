// Bytes per cached token, of each kind: N entries made as the gateway makes
// them (the record or claims an issuer sends, the principal, its identity
// headers, the cache entry and key), heap measured after a full collection
// before and after: a JWT, an introspection result found again (it then
// keeps its principal and identity headers), and one used once. Run with
// --expose-gc; prints {"jwt": B, "introspection": B, "introspectionOnce": B}.
//   node --expose-gc bench/entry-bytes.mjs [N]
import { randomBytes } from 'node:crypto'
import { IntrospectionClient, IntrospectionMemory, principalFromIntrospection } from '../dist/pipeline/authn/introspection.js'
import { principalFromClaims } from '../dist/pipeline/authn/principal.js'
import { VerifiedTokenCache } from '../dist/pipeline/authn/verified-cache.js'
import { identityHeaders } from '../dist/pipeline/mutate/headers.js'

const N = Number(process.argv[2] ?? 100_000)
const ISS = 'https://bench.example'
const names = { clientId: 'x-client-id', subject: 'x-subject', scopes: 'x-scopes', issuer: 'x-issuer', claims: [] }
const keepClaims = ['jti', 'iat'] // what every config keeps (revocations)
const now = Math.floor(Date.now() / 1000)
const heap = () => {
  globalThis.gc()
  globalThis.gc()
  return process.memoryUsage().heapUsed
}
// What issuers send: JSON, parsed (every value a fresh string, as off the wire).
const claimsOf = (i, token) => JSON.parse(JSON.stringify({ iss: ISS, aud: 'bench-api', sub: `user-${token.slice(0, 12)}`, client_id: `client-${i % 100}`, scope: 'read', jti: token.slice(12, 28), iat: now, exp: now + 7200 }))

function jwtBytes() {
  const issuer = { id: 'jwt', issuer: ISS, audiences: ['bench-api'], algorithms: ['ES256'], clockSkewSeconds: 60, requireTyp: undefined, getKey: undefined, keyVersion: () => 0 }
  const cache = new VerifiedTokenCache(N)
  const before = heap()
  for (let i = 0; i < N; i++) {
    const token = randomBytes(300).toString('base64url') // a JWT's length; only its hash is kept
    const principal = principalFromClaims('jwt', ISS, claimsOf(i, token))
    const key = cache.cacheKey(token)
    cache.set(key, issuer, principal, keepClaims)
    identityHeaders(cache.get(key), names)
  }
  const after = heap()
  if (cache.size !== N) throw new Error(`${cache.size} JWTs cached, not ${N}`) // also keeps the cache alive until measured
  return Math.round((after - before) / N)
}

/** @param foundAgain whether the record was found in the cache again (then it keeps its principal and identity headers) */
function introspectionBytes(foundAgain) {
  const client = new IntrospectionClient('opaque', `${ISS}/opaque`, { endpoint: 'http://127.0.0.1:1/introspect', clientId: 'a', clientSecret: 'b', authMethod: 'client_secret_basic', timeoutMs: 1000, maxTtlMs: 3_600_000, negativeTtlMs: 1000, requireAudience: true, keepClaims })
  const issuer = { id: 'opaque', issuer: `${ISS}/opaque`, audiences: ['bench-api'], clockSkewSeconds: 60, introspection: client, scopeClaims: [['scope'], ['scp']] }
  const lru = new IntrospectionMemory(N)
  const before = heap()
  for (let i = 0; i < N; i++) {
    const token = randomBytes(32).toString('base64url')
    const record = client.record({ active: true, token_type: 'Bearer', ...claimsOf(i, token), iss: `${ISS}/opaque` })
    const key = client.cacheKey(token)
    lru.set(key, record, Date.now() + 3_600_000)
    identityHeaders(principalFromIntrospection(issuer, lru.get(key), now, foundAgain), names)
  }
  const after = heap()
  if (lru.size !== N) throw new Error(`${lru.size} records cached, not ${N}`)
  return Math.round((after - before) / N)
}

process.stdout.write(JSON.stringify({ jwt: jwtBytes(), introspection: introspectionBytes(true), introspectionOnce: introspectionBytes(false) }))
