import { internString } from '../../cache/intern.js'
import { GatewayError } from '../../errors.js'
import type { Principal } from '../authn/principal.js'
import { ownClaim } from '../authn/claim-path.js'

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
  /** Folded name prefixes removed the same way: those starting with "x-", and the others. */
  readonly stripPrefixes: readonly string[]
  readonly stripOtherPrefixes: readonly string[]
}

/**
 * Request headers a client may never hand to an upstream, by family: whatever
 * the gateway sets itself, whatever some proxy, load balancer or identity
 * layer sets for its upstreams (so some framework trusts it), and whatever
 * lets a framework override the path or the method that was authorized. A
 * name is matched after folding (foldHeaderName), so every spelling a backend
 * may read as the same name is covered. Operators can add names and prefixes
 * (identity_headers.strip_request_headers) but not remove these.
 */
export const BUILT_IN_STRIPPED = [
  // forwarding and client-address headers, set by proxies
  'forwarded',
  'x-forwarded',
  'x-real-ip',
  'true-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'client-ip',
  'x-originating-ip',
  'x-request-id',
  'x-correlation-id',
  // path and method overrides some frameworks honour
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  // credentials meant for a proxy
  'proxy-authorization',
  // client certificates as TLS-terminating proxies pass them (RFC 9440, nginx, IIS ARR)
  'client-cert',
  'client-cert-chain',
  'ssl-client-cert',
  'x-arr-clientcert',
  // hop-by-hop (those named in Connection go as well)
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'upgrade',
  'http2-settings',
] as const

/** Name prefixes of the same families (folded). */
export const BUILT_IN_STRIPPED_PREFIXES = [
  'x-forwarded-', // X-Forwarded-For/-Host/-Proto/-User/-Email/-Groups/-Access-Token/-Client-Cert/-Ssl/…
  'x-original-', // X-Original-URL/-URI/-Method/-Host
  'x-rewrite-',
  'x-real-',
  'x-remote-', // X-Remote-User/-Addr/-IP
  'x-client-', // X-Client-IP/-Cert/-Verify/-DN, and the default X-Client-Id
  'x-cluster-client-',
  'x-proxy-user',
  'x-proxyuser-',
  'x-auth-', // X-Auth-Request-User (oauth2-proxy), X-Auth-User, X-Auth-Token…
  'x-authenticated-',
  'x-user-',
  'x-consumer-', // Kong
  'x-credential-',
  'x-userinfo',
  'x-id-token',
  'x-access-token',
  'x-gateway-',
  'x-envoy-',
  'x-amzn-oidc-', // AWS ALB
  'x-amzn-mtls-', // AWS ALB mutual TLS
  'x-ms-client-principal', // Azure App Service
  'x-goog-authenticated-', // Google IAP
  'x-ssl-', // X-SSL-Client-Cert, X-SSL-Client-Verify (nginx conventions)
] as const

/** Folded name endings of the client-address family (`X-Whatever-Client-IP`, `CDN-Connecting-IP`). */
const STRIPPED_SUFFIXES = ['-client-ip', '-connecting-ip', '-real-ip', '-forwarded-for'] as const

/**
 * The name a lenient backend may read a header as: case-folded, with every
 * character other than a letter or a digit read as `-` (CGI and PHP turn
 * `-` `.` and `_` into `_`, nginx with underscores_in_headers, frameworks
 * that fold further).
 */
export function foldHeaderName(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]/g, '-')
}

/** Whether a folded name is one that never reaches an upstream as the client sent it. */
export function isStripped(policy: HeaderPolicy, folded: string): boolean {
  if (policy.strip.has(folded)) return true
  // Most names (host, accept, content-type…) are settled by their first two characters and their last.
  if (folded.charCodeAt(0) === 0x78 && folded.charCodeAt(1) === 0x2d) {
    for (const prefix of policy.stripPrefixes) if (folded.startsWith(prefix)) return true
  }
  for (const prefix of policy.stripOtherPrefixes) if (folded.startsWith(prefix)) return true
  const last = folded.charCodeAt(folded.length - 1)
  if (last === 0x70 /* p */ || last === 0x72 /* r */) {
    for (const suffix of STRIPPED_SUFFIXES) if (folded.endsWith(suffix)) return true
  }
  return false
}

/**
 * @param extra operator additions: header names, or prefixes ending in `*`
 */
export function buildHeaderPolicy(identity: IdentityHeaderNames, extra: readonly string[] = []): HeaderPolicy {
  const strip = new Set<string>(BUILT_IN_STRIPPED)
  const stripPrefixes = new Set<string>(BUILT_IN_STRIPPED_PREFIXES)
  for (const name of [identity.clientId, identity.subject, identity.scopes, identity.issuer, ...identity.claims.map(([, h]) => h)]) {
    strip.add(foldHeaderName(name))
  }
  for (const name of extra) {
    if (name.endsWith('*')) stripPrefixes.add(foldHeaderName(name.slice(0, -1)))
    else strip.add(foldHeaderName(name))
  }
  const all = [...stripPrefixes]
  return { identity, strip, stripPrefixes: all.filter((p) => p.startsWith('x-')), stripOtherPrefixes: all.filter((p) => !p.startsWith('x-')) }
}

/**
 * A value HTTP carries unchanged: printable ASCII, without leading or
 * trailing white space (which parsers trim). Anything else would reach the
 * upstream as something other than the claim, so the token is refused.
 */
const HEADER_VALUE = /^(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?$/

/** JSON with every non-ASCII character escaped, so that it travels in a header unchanged. */
function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'))
}


/**
 * The identity headers for a principal, computed before forwarding so that a
 * claim that cannot travel in a header fails the request instead of reaching
 * the backend half-formed. Memoised for principals seen again (verified-token
 * cache hits) under the same header mapping.
 */
export function identityHeaders(principal: Principal, names: IdentityHeaderNames): Readonly<Record<string, string>> {
  if (principal.identityHeadersFor === names) return principal.identityHeaders!
  const headers = computeIdentityHeaders(principal, names)
  principal.identityHeaders = headers
  principal.identityHeadersFor = names
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
  put(names.scopes, internString([...principal.scopes].join(' ')), 'scope')
  put(names.issuer, principal.issuer, 'iss')
  for (const [claim, header] of names.claims) {
    const value = ownClaim(principal.claims, claim)
    if (value === undefined || value === null) continue
    put(header, typeof value === 'string' ? value : asciiJson(value), claim)
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

/** Names already in folded form (Node lower-cases header names). */
const FOLDED = /^[a-z0-9-]*$/

/** Hop-by-hop and framing headers the proxy sets itself on each connection. */
const CONNECTION_LEVEL = ['connection', 'transfer-encoding', 'host', 'expect']

/**
 * The headers sent upstream, from the client's (Node's lower-cased
 * `req.headers`). Cleans, then adds: `Connection` and every header it names
 * go first (so a client cannot make the proxy drop what it adds), then every
 * header whose folded name is in a family the gateway owns (isStripped), on
 * every route; then the gateway's own values are set.
 */
export function rewriteRequestHeaders(incoming: Readonly<Record<string, string | string[] | undefined>>, ctx: OutgoingHeaderContext): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {}
  const named = connectionNamed(incoming.connection)
  const policy = ctx.policy
  for (const key in incoming) {
    const value = incoming[key]
    // HTTP/2 pseudo-headers (:method, :path, :authority, :scheme) are the request line, not headers.
    if (value === undefined || key.charCodeAt(0) === 0x3a) continue
    const folded = FOLDED.test(key) ? key : foldHeaderName(key)
    if (isStripped(policy, folded) || CONNECTION_LEVEL.includes(key) || named?.includes(key)) continue
    headers[key] = value
  }
  // A DPoP proof goes with the token it proves: both, or neither.
  if (!ctx.forwardAuthorization) {
    delete headers.authorization
    delete headers.dpop
  }
  Object.assign(headers, ctx.set)
  if (ctx.identity) Object.assign(headers, ctx.identity)
  return headers
}
