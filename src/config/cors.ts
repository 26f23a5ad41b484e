import { Type, type Static } from '@sinclair/typebox'
import { serialisedOrigin, type CorsPolicy } from '../pipeline/cors/cors.js'
import { parseDuration } from './duration.js'
import type { FieldPath } from './errors.js'

/**
 * The `cors` section (global) and a route's `cors` (its own policy, or false
 * for none): which browser origins may call the API. Schema and compile step
 * side by side; the answers are made in src/pipeline/cors/.
 */

const strict = { additionalProperties: false } as const

export const CORS_DEFAULTS = {
  methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
  maxAge: '10m',
} as const

const HeaderToken = Type.String({ pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$', description: 'a header name' })

export const CorsSchema = Type.Object(
  {
    allowed_origins: Type.Array(
      Type.String({ minLength: 1, description: 'an origin ("https://app.example.com", "http://localhost:3000"), "https://*.example.com" for its subdomains, or "*" (never with credentials)' }),
      { minItems: 1, uniqueItems: true, description: 'origins whose pages may call these routes' },
    ),
    allowed_methods: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Z][A-Z-]*$' }), { minItems: 1, uniqueItems: true, description: 'methods a page may use (default: the route\'s methods, else GET, HEAD, POST, PUT, PATCH, DELETE)' })),
    allowed_headers: Type.Optional(Type.Array(HeaderToken, { uniqueItems: true, description: 'request headers a page may send ("Authorization" to send a token; default none beyond the CORS-safelisted ones)' })),
    exposed_headers: Type.Optional(Type.Array(HeaderToken, { uniqueItems: true, description: 'response headers a page may read beyond the safelisted ones (default: WWW-Authenticate and X-Request-Id)' })),
    max_age: Type.Optional(Type.String({ pattern: '^[0-9]+(ms|s|m|h)$', default: CORS_DEFAULTS.maxAge, description: 'how long a browser may cache a preflight answer (at most 24h)' })),
    allow_credentials: Type.Optional(Type.Boolean({ default: false, description: 'pages may send cookies or client certificates with their calls (Access-Control-Allow-Credentials)' })),
  },
  { ...strict, description: 'CORS: preflights answered by the gateway, without a token and never forwarded; actual calls still need their token' },
)

export const RouteCorsSchema = Type.Union([CorsSchema, Type.Literal(false)], { description: 'this route\'s CORS policy (replacing the global one), or false for none' })

export type CorsConfig = Static<typeof CorsSchema>

type Report = (path: FieldPath, message: string, atKey?: boolean) => void

const WILDCARD = /^(https?):\/\/\*(\.[a-z0-9-]+(?:\.[a-z0-9-]+)+)(:[0-9]{1,5})?$/

/**
 * Compiles a CORS policy for a route (whose methods, when it names them,
 * bound what may be allowed: a route's own policy may not name others; the
 * global one is narrowed to them). Origins must be serialised origins: no path,
 * no trailing slash, no "null"; `*` only without credentials.
 */
export function compileCors(config: CorsConfig, routeMethods: readonly string[] | null, at: FieldPath, report: Report, global = false): CorsPolicy | undefined {
  let ok = true
  const fail = (path: FieldPath, message: string) => {
    ok = false
    report(path, message)
  }
  const credentials = config.allow_credentials ?? false
  const origins = new Set<string>()
  const originSuffixes: { scheme: string; suffix: string; port: string }[] = []
  let anyOrigin = false
  config.allowed_origins.forEach((text, i) => {
    const where = [...at, 'allowed_origins', i]
    if (text === '*') {
      if (credentials) fail(where, '"*" cannot go with allow_credentials: true (browsers refuse it, and any site could act with the user\'s credentials); list the origins')
      anyOrigin = true
      return
    }
    const wildcard = WILDCARD.exec(text.toLowerCase())
    if (wildcard) {
      const [, scheme, suffix, port] = wildcard
      const defaultPort = (scheme === 'http' && port === ':80') || (scheme === 'https' && port === ':443')
      originSuffixes.push({ scheme: scheme!, suffix: suffix!, port: port === undefined || defaultPort ? '' : port })
      return
    }
    const origin = serialisedOrigin(text)
    if (origin === undefined) {
      fail(where, `"${text}" is not an origin: scheme (http or https), host and optional port, with no path ("https://app.example.com")`)
      return
    }
    origins.add(origin)
  })
  let methods = config.allowed_methods ?? (routeMethods ? routeMethods.filter((m) => m !== 'OPTIONS') : [...CORS_DEFAULTS.methods])
  if (global && routeMethods) methods = methods.filter((m) => routeMethods.includes(m))
  else if (routeMethods) {
    ;(config.allowed_methods ?? []).forEach((m, i) => {
      if (!routeMethods.includes(m)) fail([...at, 'allowed_methods', i], `${m} is not among this route's methods`)
    })
  }
  // Its range (at most 24h, which browsers cap anyway) is checked with every duration (checkDurations).
  const maxAgeMs = parseDuration(config.max_age ?? CORS_DEFAULTS.maxAge)
  const allowed = config.allowed_headers ?? []
  const exposed = config.exposed_headers ?? ['WWW-Authenticate', 'X-Request-Id']
  if (!ok) return undefined
  return Object.freeze({
    origins,
    originSuffixes: Object.freeze(originSuffixes),
    anyOrigin,
    methods: new Set(methods),
    headers: new Set(allowed.map((h) => h.toLowerCase())),
    allowMethods: methods.join(', '),
    allowHeaders: allowed.join(', '),
    exposeHeaders: exposed.join(', '),
    maxAgeSeconds: Math.floor(maxAgeMs / 1000),
    credentials,
  })
}
