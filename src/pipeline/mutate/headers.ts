import { GatewayError } from '../../errors.js'
import type { Principal } from '../authn/principal.js'

/** Where each identity value goes (lower-case header names). */
export interface IdentityHeaderNames {
  readonly clientId: string
  readonly subject: string
  readonly scopes: string
  readonly issuer: string
  /** Extra claims: [claim name, header name]. */
  readonly claims: ReadonlyArray<readonly [string, string]>
}

export interface HeaderPolicy {
  readonly identity: IdentityHeaderNames
  /** Folded names (see foldHeaderName) removed from every request before anything is added. */
  readonly strip: ReadonlySet<string>
}

/**
 * Request headers that are never forwarded as the client sent them:
 * forwarding headers the gateway sets itself, headers some frameworks let
 * override the path or method that was authorized, and hop-by-hop headers
 * (those named in `Connection` are removed by the proxy before this runs).
 */
export const ALWAYS_STRIPPED = [
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-forwarded-server',
  'forwarded',
  'x-real-ip',
  'x-request-id',
  'x-original-url',
  'x-original-uri',
  'x-rewrite-url',
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'proxy-authorization',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'upgrade',
] as const

/**
 * The name a lenient backend may read a header as: case-folded, with `_` and
 * `.` read as `-` (CGI, nginx with underscores_in_headers, some frameworks).
 */
export function foldHeaderName(name: string): string {
  return name.toLowerCase().replace(/[_.]/g, '-')
}

export function buildHeaderPolicy(identity: IdentityHeaderNames): HeaderPolicy {
  const strip = new Set<string>(ALWAYS_STRIPPED)
  for (const name of [identity.clientId, identity.subject, identity.scopes, identity.issuer, ...identity.claims.map(([, h]) => h)]) {
    strip.add(foldHeaderName(name))
  }
  return { identity, strip }
}

const HEADER_VALUE = /^[\x20-\x7e]*$/

/** Identity headers already computed, per principal (cached principals come back) and header mapping. */
const computed = new WeakMap<Principal, { names: IdentityHeaderNames; headers: Readonly<Record<string, string>> }>()

/**
 * The identity headers for a principal, computed before forwarding so that a
 * claim that cannot travel in a header fails the request instead of reaching
 * the backend half-formed. Memoised for principals seen again (verified-token
 * cache hits) under the same header mapping.
 */
export function identityHeaders(principal: Principal, names: IdentityHeaderNames): Readonly<Record<string, string>> {
  const known = computed.get(principal)
  if (known !== undefined && known.names === names) return known.headers
  const headers = computeIdentityHeaders(principal, names)
  computed.set(principal, { names, headers })
  return headers
}

function computeIdentityHeaders(principal: Principal, names: IdentityHeaderNames): Record<string, string> {
  const out: Record<string, string> = {}
  const put = (header: string, value: string | undefined, claim: string) => {
    if (value === undefined) return
    if (!HEADER_VALUE.test(value)) throw new GatewayError('claims_invalid', `the "${claim}" claim cannot be sent in a header`)
    out[header] = value
  }
  put(names.clientId, principal.clientId, 'client_id')
  put(names.subject, principal.subject, 'sub')
  put(names.scopes, [...principal.scopes].join(' '), 'scope')
  put(names.issuer, principal.issuer, 'iss')
  for (const [claim, header] of names.claims) {
    const value = principal.claims[claim]
    if (value === undefined || value === null) continue
    put(header, typeof value === 'string' ? value : JSON.stringify(value), claim)
  }
  return out
}

export interface OutgoingHeaderContext {
  readonly policy: HeaderPolicy
  readonly forwardAuthorization: boolean
  /** Identity headers to add; null on public routes. */
  readonly identity: Readonly<Record<string, string>> | null
  /** X-Forwarded-*, X-Request-Id and, with preserve_host, Host. */
  readonly set: Readonly<Record<string, string>>
}

/** The header names a `Connection` header lists (RFC 9110 §7.6.1), lower-cased; none for keep-alive/close alone. */
export function connectionNamed(connection: string | string[] | undefined): string[] | undefined {
  if (typeof connection !== 'string' || connection === 'keep-alive' || connection === 'close') return undefined
  return connection.toLowerCase().split(',').map((s) => s.trim())
}

/** Hop-by-hop and framing headers the proxy sets itself on each connection. */
const CONNECTION_LEVEL = ['connection', 'transfer-encoding', 'host', 'expect']

/**
 * The headers sent upstream, from the client's (Node's lower-cased
 * `req.headers`). Cleans, then adds: `Connection` and every header it names
 * go first (so a client cannot make the proxy drop what it adds), then every
 * header whose folded name the gateway owns (any case, `_` or `.` for `-`),
 * on every route; then the gateway's own values are set.
 */
export function rewriteRequestHeaders(incoming: Readonly<Record<string, string | string[] | undefined>>, ctx: OutgoingHeaderContext): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {}
  const named = connectionNamed(incoming.connection)
  const strip = ctx.policy.strip
  for (const key in incoming) {
    const value = incoming[key]
    if (value === undefined) continue
    const folded = key.includes('_') || key.includes('.') ? foldHeaderName(key) : key
    if (strip.has(folded) || CONNECTION_LEVEL.includes(key) || named?.includes(key)) continue
    headers[key] = value
  }
  if (!ctx.forwardAuthorization) delete headers.authorization
  Object.assign(headers, ctx.set)
  if (ctx.identity) Object.assign(headers, ctx.identity)
  return headers
}
