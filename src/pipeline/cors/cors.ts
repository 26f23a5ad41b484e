import { GatewayError } from '../../errors.js'

/**
 * A route's CORS policy, compiled. Origins are compared as serialised
 * origins (scheme, host, port; lower case; no default port), never as
 * prefixes or substrings.
 */
export interface CorsPolicy {
  /** Exact allowed origins. */
  readonly origins: ReadonlySet<string>
  /** `https://*.example.com`: scheme, then a host suffix (with its leading dot), then the port part. */
  readonly originSuffixes: readonly { readonly scheme: string; readonly suffix: string; readonly port: string }[]
  /** Any origin (`*`); never with credentials. */
  readonly anyOrigin: boolean
  readonly methods: ReadonlySet<string>
  /** Lower-case request header names a preflight may ask for. */
  readonly headers: ReadonlySet<string>
  readonly allowMethods: string
  readonly allowHeaders: string
  readonly exposeHeaders: string
  readonly maxAgeSeconds: number
  readonly credentials: boolean
}

/** Headers of an answer to a request from an allowed origin (or only Vary, for any other). */
export type CorsHeaders = Readonly<Record<string, string>>

const VARY_ORIGIN: CorsHeaders = Object.freeze({ vary: 'Origin' })
const ORIGIN = /^(https?):\/\/([a-z0-9.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$/

/** The serialised form of an Origin header value, or undefined when it is not a plain http(s) origin. */
export function serialisedOrigin(value: string): string | undefined {
  const m = ORIGIN.exec(value.toLowerCase())
  if (m === null) return undefined
  const [, scheme, host, port] = m
  if ((scheme === 'http' && port === ':80') || (scheme === 'https' && port === ':443')) return `${scheme}://${host}`
  return `${scheme}://${host}${port ?? ''}`
}

/** Whether the policy allows a (serialised) origin. */
export function originAllowed(policy: CorsPolicy, origin: string): boolean {
  if (policy.origins.has(origin)) return true
  for (const w of policy.originSuffixes) {
    const prefix = w.scheme + '://'
    if (!origin.startsWith(prefix)) continue
    const rest = origin.slice(prefix.length)
    const colon = rest.startsWith('[') ? rest.indexOf(':', rest.indexOf(']')) : rest.indexOf(':')
    const host = colon === -1 ? rest : rest.slice(0, colon)
    const port = colon === -1 ? '' : rest.slice(colon)
    // At least one label before the suffix: *.example.com is not example.com itself.
    if (port === w.port && host.length > w.suffix.length && host.endsWith(w.suffix)) return true
  }
  return policy.anyOrigin
}

/** The answer's CORS headers for a request that is not a preflight (made once per request, on routes with CORS). */
export function corsHeaders(policy: CorsPolicy, originHeader: string | undefined): CorsHeaders {
  if (originHeader === undefined) return VARY_ORIGIN
  const origin = serialisedOrigin(originHeader)
  if (origin === undefined || !originAllowed(policy, origin)) return VARY_ORIGIN
  const out: Record<string, string> = { vary: 'Origin', 'access-control-allow-origin': policy.anyOrigin && !policy.credentials && !policy.origins.has(origin) ? '*' : origin }
  if (policy.credentials) out['access-control-allow-credentials'] = 'true'
  if (policy.exposeHeaders !== '') out['access-control-expose-headers'] = policy.exposeHeaders
  return out
}

/** Whether a request is a CORS preflight: OPTIONS with Origin and Access-Control-Request-Method, and no body. */
export function isPreflight(method: string, headers: Readonly<Record<string, string | string[] | undefined>>): boolean {
  return (
    method === 'OPTIONS' &&
    typeof headers.origin === 'string' &&
    typeof headers['access-control-request-method'] === 'string' &&
    headers['transfer-encoding'] === undefined &&
    (headers['content-length'] === undefined || headers['content-length'] === '0')
  )
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/**
 * The answer to a preflight for a route with CORS: the headers of a 204 when
 * the origin, the method and every requested header are allowed; otherwise
 * `cors_refused` (403, with no CORS headers, so the browser refuses the
 * actual request). The preflight never reaches the upstream and needs no
 * token: it opens nothing, since the actual request is checked as any other.
 */
export function preflight(policy: CorsPolicy, originHeader: string, requestMethod: string, requestHeaders: string | undefined): CorsHeaders {
  const origin = serialisedOrigin(originHeader)
  if (origin === undefined || !originAllowed(policy, origin)) throw new GatewayError('cors_refused', 'this origin may not call this route')
  if (!TOKEN.test(requestMethod) || !policy.methods.has(requestMethod)) throw new GatewayError('cors_refused', 'this method may not be used from another origin here')
  if (requestHeaders !== undefined) {
    for (const raw of requestHeaders.split(',')) {
      const name = raw.trim().toLowerCase()
      if (name !== '' && !policy.headers.has(name)) throw new GatewayError('cors_refused', 'a requested header may not be sent from another origin here')
    }
  }
  const out: Record<string, string> = {
    vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
    'access-control-allow-origin': policy.anyOrigin && !policy.credentials && !policy.origins.has(origin) ? '*' : origin,
    'access-control-allow-methods': policy.allowMethods,
    'access-control-max-age': String(policy.maxAgeSeconds),
  }
  if (policy.allowHeaders !== '') out['access-control-allow-headers'] = policy.allowHeaders
  if (policy.credentials) out['access-control-allow-credentials'] = 'true'
  return out
}
