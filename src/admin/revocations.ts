import { timingSafeEqual, createHash } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { decodeJwt } from 'jose'
import type { RevocationSettings } from '../config/revocation.js'
import { tokenDigest, type Denial } from '../cache/revocation-list.js'

export interface RevocationApi {
  /** The settings in force (they follow reloads). */
  settings(): RevocationSettings
  /** The `iss` of each configured issuer id. */
  issuers(): ReadonlyMap<string, string>
  /** Applies a denial here, and shares it (workers, replicas). */
  apply(denial: Denial): Promise<void> | void
  list(): Promise<readonly Denial[]> | readonly Denial[]
  now?: () => number
}

interface RevokeBody {
  token?: unknown
  issuer?: unknown
  jti?: unknown
  sub?: unknown
  client_id?: unknown
  before?: unknown
}

const text = (v: unknown) => (typeof v === 'string' && v.length > 0 && v.length <= 4096 ? v : undefined)

/**
 * The operator's revocation API on the admin listener, off unless
 * `revocation.api_token` is set (then every call needs it as a bearer token,
 * compared in constant time):
 *
 * - `POST /revocations` with one of `{"token": "…"}` (a JWT of a trusted
 *   issuer is denied by its jti until its exp; any other token by its hash
 *   for max_token_lifetime), `{"issuer", "jti"}`, `{"issuer", "sub"}` or
 *   `{"issuer", "client_id"}` (every token issued before `before`, default
 *   now); `issuer` is an issuer's id or its `iss`.
 * - `GET /revocations`: the denials in force.
 */
export function registerRevocationApi(app: FastifyInstance, api: RevocationApi): void {
  const now = () => (api.now ?? Date.now)() / 1000
  const authorized = (request: FastifyRequest, reply: FastifyReply): boolean => {
    const digest = api.settings().apiTokenDigest
    if (digest === undefined) {
      void reply.code(404).send({ error: 'not_found', error_description: 'the revocation API is off (revocation.api_token is not set)' })
      return false
    }
    const m = /^Bearer ([\x21-\x7e]+)$/.exec(request.headers.authorization ?? '')
    const given = m ? createHash('sha256').update(m[1]!).digest() : undefined
    if (given === undefined || !timingSafeEqual(given, digest)) {
      void reply.code(401).header('www-authenticate', 'Bearer realm="gateway-admin"').send({ error: 'unauthorized', error_description: 'a valid revocation API token is required' })
      return false
    }
    return true
  }
  app.post('/revocations', { bodyLimit: 64 * 1024 }, async (request, reply) => {
    if (!authorized(request, reply)) return reply
    const denial = toDenial((request.body ?? {}) as RevokeBody, api, now())
    if (typeof denial === 'string') return reply.code(400).send({ error: 'invalid_request', error_description: denial })
    await api.apply(denial)
    return reply.code(201).send({ denial })
  })
  app.get('/revocations', async (request, reply) => {
    if (!authorized(request, reply)) return reply
    const denials = await api.list()
    return reply.header('cache-control', 'no-store').send({ count: denials.length, denials })
  })
}

/** The denial a request asks for, or why it cannot be made. */
function toDenial(body: RevokeBody, api: RevocationApi, nowSeconds: number): Denial | string {
  const lifetime = api.settings().maxTokenLifetimeSeconds
  const issuers = api.issuers()
  const trusted = new Set(issuers.values())
  const token = text(body.token)
  if (token !== undefined) {
    let claims: Record<string, unknown> | undefined
    try {
      claims = decodeJwt(token)
    } catch {
      claims = undefined
    }
    // Unverified: it only chooses the form of the denial, which denies nothing a forger could use.
    if (claims && typeof claims.iss === 'string' && trusted.has(claims.iss) && typeof claims.jti === 'string' && typeof claims.exp === 'number') {
      return { kind: 'jti', issuer: claims.iss, id: claims.jti, until: Math.min(claims.exp, nowSeconds + lifetime) }
    }
    return { kind: 'token', issuer: '*', id: tokenDigest(token), until: nowSeconds + lifetime }
  }
  const given = text(body.issuer)
  if (given === undefined) return 'give "token", or "issuer" with one of "jti", "sub", "client_id"'
  const issuer = issuers.get(given) ?? (trusted.has(given) ? given : undefined)
  if (issuer === undefined) return `"${given.slice(0, 100)}" is not a configured issuer (its id or its iss)`
  const jti = text(body.jti)
  if (jti !== undefined) return { kind: 'jti', issuer, id: jti, until: nowSeconds + lifetime }
  const before = body.before === undefined ? nowSeconds : typeof body.before === 'number' && Number.isFinite(body.before) ? body.before : undefined
  if (before === undefined) return '"before" must be a time in seconds since the epoch'
  const sub = text(body.sub)
  if (sub !== undefined) return { kind: 'sub', issuer, id: sub, before, until: before + lifetime }
  const client = text(body.client_id)
  if (client !== undefined) return { kind: 'client', issuer, id: client, before, until: before + lifetime }
  return 'give one of "jti", "sub" or "client_id" with "issuer"'
}
