import { isIP } from 'node:net'
import { dirname, resolve } from 'node:path'
import { usableCpus } from '../collector.js'
import type { JWK } from 'jose'
import type { TokenPolicy, RouteIssuer } from '../pipeline/authn/authenticate.js'
import { Discovery } from '../pipeline/authn/discovery.js'
import { IntrospectionClient, type IntrospectingIssuer } from '../pipeline/authn/introspection.js'
import { combineKeySources, type TrustedIssuer } from '../pipeline/authn/jwt.js'
import { RemoteJwks, type RejectedKey } from '../pipeline/authn/remote-jwks.js'
import { parseClaimPath, type ClaimPath } from '../pipeline/authn/claim-path.js'
import { loadStaticKey } from '../pipeline/authn/static-keys.js'
import { routeScopes, type RouteScopes, type ScopeRule } from '../pipeline/authz/scopes.js'
import { parsePattern, PatternError, patternsOverlap, staticPrefix } from '../pipeline/match/pattern.js'
import type { OverridePolicy } from '../pipeline/method/override.js'
import { RouteConflictError, Router, type RouteSpec } from '../pipeline/match/router.js'
import { BUILT_IN_STRIPPED, buildHeaderPolicy, foldHeaderName, type HeaderPolicy } from '../pipeline/mutate/headers.js'
import { parseDuration } from './duration.js'
import { foldPathCase } from '../pipeline/normalize/path.js'
import type { Target } from '../pipeline/forward/targets.js'
import type { DependencyObserver } from '../pipeline/authn/dependency-observer.js'
import { AuthorizationServer, FailureThrottle, type RegisteredClient } from '../authorization-server/server.js'
import { parseSecretHash } from '../authorization-server/secret-hash.js'
import { SecretVerifier } from '../authorization-server/secret-verifier.js'
import { generateSigningKey, loadSigningKey, type SigningKey } from '../authorization-server/signing-keys.js'
import { RevocationList } from '../cache/revocation-list.js'
import { MAX_SET_BYTES, receiveSet } from '../pipeline/signals/ssf-receiver.js'
import { ExpiringLru } from '../cache/lru.js'
import { ConfigError, type ConfigIssue } from './errors.js'
import type { FieldPath, ParsedConfig } from './load.js'
import { compileLimits, compileUpstreamLimits, type CompiledLimits } from './limits.js'
import { claimNamesRead, compileClaimRules, compileStepUp, STEP_UP_CLAIMS } from './route-policy.js'
import { compileCors } from './cors.js'
import { assertionClaimNames, compileAssertionSigner, compileUpstreamAssertion } from './assertion.js'
import { compileUpstreamTls } from './upstream-tls.js'
import { compileRevocation, type RevocationSettings } from './revocation.js'
import { compileRedis, type CompiledRedis } from './redis.js'
import { compileTracing } from './tracing.js'
import { bindingFor, compileCertificateHeader, compileDpop, type CompiledDpop } from './sender-constraint.js'
import { compileListenerTls, type CompiledListenerTls } from './tls-listener.js'
import { compileWebSocket } from './websocket.js'
import { compileStream } from './stream.js'
import { compileHttp2, type CompiledHttp2 } from './http2.js'
import type { StreamPolicy } from '../pipeline/forward/targets.js'
import type { WebSocketPolicy } from '../pipeline/websocket/tunnel.js'
import type { BindingMode } from '../pipeline/binding/binding.js'
import type { CertificateSources } from '../oauth/client-certificate.js'
import type { TracingSettings } from '../observe/tracing.js'
import type { ClaimRule } from '../pipeline/policy/claim-rules.js'
import type { StepUp } from '../pipeline/policy/step-up.js'
import type { CorsPolicy } from '../pipeline/cors/cors.js'
import type { RouteRateLimits } from '../pipeline/ratelimit/limiter.js'
import { compileRateLimits, compileRouteRateLimits, rateLimitClaimNames, type CompiledRateLimits } from './rate-limits.js'
import { DEFAULTS, type Config, type IssuerConfig, type ScopeRequirementConfig, type ValidationMode } from './schema.js'

export type CompiledUpstream = Target

export type RouteAuth =
  | { readonly kind: 'public' }
  | {
      readonly kind: 'protected'
      readonly tokens: TokenPolicy
      readonly scopes: RouteScopes
      readonly forwardAuthorization: boolean
      /** Conditions on claims, checked after scopes (empty: none). */
      readonly claimRules: readonly ClaimRule[]
      /** How and when the user must have authenticated (RFC 9470), when the route says. */
      readonly stepUp: StepUp | undefined
      /** Which tokens are accepted by what they are bound to, per issuer id (the route's mode, else the issuer's). */
      readonly binding: ReadonlyMap<string, BindingMode>
      /** The route's own binding mode, when it sets one (else each issuer's applies). */
      readonly bindingMode: BindingMode | undefined
    }

export interface CompiledRoute extends RouteSpec {
  readonly upstream: CompiledUpstream
  readonly stripPrefix: string | null
  readonly auth: RouteAuth
  /** Largest request body, in bytes. */
  readonly maxBodyBytes: number
  /** How method overrides are treated: see pipeline/method/override.ts. */
  readonly methodOverride: OverridePolicy
  /** The route's CORS policy (its own or the global one), when it has one. */
  readonly cors: CorsPolicy | undefined
  /** The route's rate limits, when it has any. */
  readonly rateLimits: RouteRateLimits | undefined
  /** Whether WebSocket upgrades are tunnelled, and their bounds (undefined: refused). */
  readonly websocket?: WebSocketPolicy | undefined
  /** Long answers: silence between chunks and the whole answer, when the route bounds them apart from the upstream's timeout. */
  readonly stream?: StreamPolicy | undefined
}

export interface IssuerRuntime extends TrustedIssuer {
  /** The remote key set, when the issuer has a jwks_uri or discovery. */
  readonly jwks: RemoteJwks | undefined
  readonly introspection: IntrospectionClient | undefined
  /** The mode used on routes that do not set their own. */
  readonly mode: ValidationMode
  /** Whether the issuer has keys to verify JWTs with. */
  readonly hasKeys: boolean
}

const USES_JWT: ReadonlySet<ValidationMode> = new Set(['jwt', 'auto', 'jwt_and_introspection'])
const USES_INTROSPECTION: ReadonlySet<ValidationMode> = new Set(['introspection', 'auto', 'jwt_and_introspection'])

export type TrustProxy = false | string[]

/**
 * The configuration as the request path uses it: validated once, immutable,
 * swapped whole on reload. Nothing on the request path reads a file or
 * re-checks a field.
 */
export interface CompiledConfig {
  readonly file: string
  /** The first 12 hex digits of the SHA-256 of the file's text (the config info metric). */
  readonly hash: string
  readonly server: {
    /** Whether the plain HTTP listener is on (server.listen is not false), and where. */
    readonly plain: boolean
    readonly host: string
    readonly port: number
    /** The HTTPS listener, when configured (read at start; its files at every reload). */
    readonly tls: CompiledListenerTls | undefined
    /** Where client certificates come from: the TLS listener, or a trusted proxy's header. */
    readonly certificates: CertificateSources
    /** HTTP/2: h2 on the HTTPS listener, h2c on its own listener (read at start). */
    readonly http2: CompiledHttp2 | undefined
    readonly trustProxy: TrustProxy
    readonly realm: string
    readonly bodyLimit: number
    readonly drainTimeoutMs: number
    readonly workers: number
    /** Fold path letters before matching (and forward the folded path). */
    readonly caseInsensitivePaths: boolean
  }
  readonly admin: { readonly host: string; readonly port: number }
  /** Bounds on what clients hold (listener ones read at start). */
  readonly limits: CompiledLimits
  readonly router: Router<CompiledRoute>
  readonly issuers: ReadonlyMap<string, IssuerRuntime>
  readonly headers: HeaderPolicy
  /** The built-in authorization server, when configured. */
  readonly authorizationServer: AuthorizationServer | undefined
  /** The identity assertion keys the admin listener publishes, when assertions are configured. */
  readonly assertionKeys: { readonly keys: readonly JWK[] } | undefined
  /** RFC 9728 metadata URL named in 401 challenges, when configured. */
  readonly resourceMetadata: string | undefined
  /** Revoked tokens: one list for the life of the process, handed from configuration to configuration. */
  readonly revocations: RevocationList
  /** Shared Signals events already applied (kept across reloads). */
  readonly signalsSeen: ExpiringLru<true>
  /** The operator API and how long its denials last. */
  readonly revocation: RevocationSettings
  /** Files read besides the configuration (keys, certificates): the reloader watches them too. */
  readonly files: readonly string[]
  /** Things the operator should know (a generated development key…), for the log. */
  readonly notices: readonly string[]
  /** Legal but likely mistakes, located: `validate` prints them, `start` logs them. */
  readonly warnings: readonly ConfigIssue[]
  /** OpenTelemetry tracing, when on (read at start: changing it needs a restart). */
  readonly tracing: TracingSettings | undefined
  /** Rate-limit settings (each route carries its own limits). */
  readonly rateLimits: CompiledRateLimits
  /** How DPoP proofs are checked. */
  readonly dpop: CompiledDpop
  /** Read once at start: changing them needs a restart. */
  readonly cache: {
    readonly redis: CompiledRedis | undefined
    readonly memoryEntries: number
  }
}

export interface CompileOptions {
  /** The configuration being replaced: remote key sets for unchanged issuers are reused. */
  readonly previous?: CompiledConfig | undefined
  /** Told of JWKS fetches and introspection calls (metrics). */
  readonly observer?: DependencyObserver | undefined
  /** CPUs this process may use (collector.ts: affinity and cgroup quota); what `workers: auto` counts. */
  readonly cpus?: number | undefined
}

/** Header names (folded) that identity headers may not take: they mean something else to HTTP or to proxies. */
const RESERVED_HEADERS = new Set([
  'host',
  'authorization',
  'content-length',
  'content-type',
  'content-encoding',
  'transfer-encoding',
  'connection',
  'cookie',
  'expect',
  ...BUILT_IN_STRIPPED,
])
const RESERVED_PREFIXES = ['x-forwarded-', 'x-original-', 'x-rewrite-', 'x-real-', 'x-envoy-', 'content-', 'sec-', 'grpc-', 'traceparent', 'tracestate']

export function splitListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':')
  const host = listen.slice(0, i).replace(/^\[(.*)\]$/, '$1')
  return { host, port: Number(listen.slice(i + 1)) }
}

const TRUST_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal'])

/** What proxy-addr accepts: an address, a CIDR range, or a named range. */
function isTrustEntry(entry: string): boolean {
  if (TRUST_NAMES.has(entry)) return true
  const [address, bits, extra] = entry.split('/')
  const family = isIP(address ?? '')
  if (family === 0 || extra !== undefined) return false
  if (bits === undefined) return true
  if (!/^[0-9]{1,3}$/.test(bits)) return false
  return Number(bits) <= (family === 4 ? 32 : 128)
}

function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[(.*)\]$/, '$1')
  if (h === 'localhost' || h === '::1') return true
  return isIP(h) === 4 && h.startsWith('127.')
}

/**
 * Checks what the schema cannot (references, conflicts, files) and builds the
 * immutable runtime configuration. Every problem is reported, located.
 */
export async function compileConfig(parsed: ParsedConfig, options: CompileOptions = {}): Promise<CompiledConfig> {
  const { config, locator } = parsed
  const issues: ConfigIssue[] = []
  const report = (path: FieldPath, message: string, atKey = false) => issues.push(locator.issue(path, message, { atKey }))
  const baseDir = dirname(resolve(locator.file))

  // Cached principals keep only the claims something reads: identity headers, claim rules, step-up.
  const keepClaims = [
    ...new Set([
      ...Object.keys(config.identity_headers?.claims ?? {}),
      ...config.routes.flatMap((r) => (r.auth === 'public' ? [] : [...claimNamesRead(r.auth.claims), ...(r.auth.step_up ? STEP_UP_CLAIMS : [])])),
      ...assertionClaimNames(config.identity_assertion),
      ...rateLimitClaimNames(config.rate_limits, config.routes.map((r) => r.rate_limits)),
      // Revocations name tokens by jti, or by subject or client before a time (iat).
      'jti',
      'iat',
    ]),
  ]
  const issuers = await compileIssuers(config, baseDir, report, options, keepClaims)
  // Issuers that are declared but broken are reported once, not again at every route using them.
  const declaredIssuers = new Set((config.issuers ?? []).map((i) => i.id))

  const notices: string[] = []
  const files: string[] = []
  const signer = await compileAssertionSigner(config.identity_assertion, baseDir, report, notices, files)
  if (config.authorization_server && !config.authorization_server.keys && (config.server?.workers ?? 1) !== 1) {
    report(['authorization_server'], 'with several workers, signing keys must come from files: each process would generate a key of its own, and tokens would verify only where they were made')
  }
  if (config.identity_assertion && !config.identity_assertion.keys && (config.server?.workers ?? 1) !== 1) {
    report(['identity_assertion'], 'with several workers, assertion keys must come from files: each process would generate a key of its own, and the JWKS would publish one of them')
  }
  const limits = compileLimits(config.limits, report)
  const redis = config.cache?.redis ? compileRedis(config.cache.redis, ['cache', 'redis'], report) : undefined
  // "auto": a worker per whole CPU the process may use (a quota of 1 CPU on a 32-core node is 1, not 32).
  const workers = config.server?.workers === 'auto' ? Math.max(1, Math.floor(options.cpus ?? usableCpus())) : (config.server?.workers ?? 1)
  const rateLimits = compileRateLimits(config.rate_limits, workers, report)
  const tracing = compileTracing(config.tracing, parsed.env ?? process.env, report)
  const dpop = compileDpop(config.dpop, workers, options.previous?.dpop, report)
  const listenerTls = await compileListenerTls(config.server?.tls, baseDir, splitListen, report, files)
  const certificateHeader = compileCertificateHeader(config.server?.client_certificate_header, Array.isArray(config.server?.trust_proxy), report)
  const http2 = compileHttp2(config.server?.http2, config.server?.tls !== undefined, config.server?.listen !== false, splitListen, report)
  if (config.server?.listen === false && !config.server.tls && http2?.cleartext === undefined) report(['server', 'listen'], 'no listener: set server.tls, or keep the plain listener')
  // Built-in endpoints (the token endpoint…) keep the default limits by address.
  const builtinLimits = compileRouteRateLimits(rateLimits, undefined, undefined, { id: '@builtin', isProtected: false }, ['rate_limits'], report)
  const caseInsensitive = config.server?.case_insensitive_paths ?? false
  const foldCase = (p: string) => (caseInsensitive ? foldPathCase(p) : p)
  const upstreams = new Map<string, CompiledUpstream>()
  const brokenUpstreams = new Set<string>()
  for (const [id, u] of Object.entries(config.upstreams)) {
    const assertion = compileUpstreamAssertion(u.assertion, id, signer, config.identity_assertion !== undefined, report)
    if ('echo' in u) {
      upstreams.set(id, { kind: 'echo', id, assertion })
      continue
    }
    const url = parseUrl(u.url, ['upstreams', id, 'url'], report)
    if (!url) {
      brokenUpstreams.add(id)
      continue
    }
    if (url.search || url.hash) report(['upstreams', id, 'url'], 'an upstream URL may not have a query or fragment')
    if (url.username || url.password) report(['upstreams', id, 'url'], 'credentials in an upstream URL are not supported')
    const tls = await compileUpstreamTls(u.tls, url, baseDir, ['upstreams', id, 'tls'], report, files)
    upstreams.set(id, {
      kind: 'http',
      id,
      base: url.origin + url.pathname.replace(/\/+$/, ''),
      origin: url.origin,
      basePath: url.pathname.replace(/\/+$/, ''),
      timeoutMs: parseDuration(u.timeout ?? DEFAULTS.upstreamTimeout),
      preserveHost: u.preserve_host ?? false,
      http2: u.http2 ?? false,
      limits: compileUpstreamLimits(u, limits.upstream, ['upstreams', id], report),
      assertion,
      tls,
    })
  }
  // Whether the gateway sees client certificates at all (its HTTPS listener asks for them, or a trusted proxy passes them).
  const seesCertificates = (listenerTls !== undefined && listenerTls.clientCertificates !== 'none') || certificateHeader !== undefined
  const authorizationServer = await compileAuthorizationServer(config, baseDir, report, options, notices, dpop, seesCertificates)

  const globalCors = config.cors ? compileCors(config.cors, null, ['cors'], report, true) : undefined
  const routes: CompiledRoute[] = []
  const routeIds = new Map<string, number>()
  config.routes.forEach((r, i) => {
    const at = (...rest: FieldPath) => ['routes', i, ...rest]
    if (routeIds.has(r.id)) report(at('id'), `duplicate route id "${r.id}" (also routes[${routeIds.get(r.id)}])`)
    routeIds.set(r.id, i)

    let pattern
    try {
      pattern = parsePattern(foldCase(r.match.path))
    } catch (err) {
      if (!(err instanceof PatternError)) throw err
      report(at('match', 'path'), err.message)
      return
    }
    const upstream = upstreams.get(r.upstream)
    if (!upstream) {
      const known = [...upstreams.keys(), ...brokenUpstreams].join(', ')
      if (!brokenUpstreams.has(r.upstream)) report(at('upstream'), `unknown upstream "${r.upstream}"; defined: ${known}`)
      return
    }
    let stripPrefix: string | null = null
    if (r.strip_prefix !== undefined) {
      let prefix
      try {
        prefix = parsePattern(foldCase(r.strip_prefix))
      } catch (err) {
        if (!(err instanceof PatternError)) throw err
        report(at('strip_prefix'), err.message)
        return
      }
      const fixed = staticPrefix(pattern)
      const p = staticPrefix(prefix)
      const isSegmentPrefix = prefix.segments.every((s) => s.kind === 'static') && (fixed === p || fixed.startsWith(p === '/' ? '/' : p + '/'))
      if (!isSegmentPrefix) report(at('strip_prefix'), `must be the static start of match.path (${fixed})`)
      stripPrefix = p === '/' ? null : p
    }
    let auth: RouteAuth
    if (r.auth === 'public') {
      auth = { kind: 'public' }
    } else {
      const protectedAuth = r.auth
      const byIss = new Map<string, RouteIssuer>()
      const opaque: IssuerRuntime[] = []
      protectedAuth.issuers.forEach((id, j) => {
        const issuer = issuers.get(id)
        if (!issuer) {
          if (!declaredIssuers.has(id)) report(at('auth', 'issuers', j), `unknown issuer "${id}"; defined: ${[...declaredIssuers].join(', ') || 'none'}`)
          return
        }
        if (byIss.has(issuer.issuer)) report(at('auth', 'issuers', j), `two trusted issuers of this route have the same iss "${issuer.issuer}"`)
        const own = protectedAuth.validation
        const mode = own ?? issuer.mode
        // The issuer's own mode is checked with the issuer; a route's override here.
        if (own && USES_JWT.has(own) && !issuer.hasKeys) report(at('auth', 'validation'), `validation "${own}" needs keys, but issuer "${id}" has no jwks_uri, keys or discovery`)
        if (own && USES_INTROSPECTION.has(own) && !issuer.introspection) {
          report(at('auth', 'validation'), `validation "${own}" needs introspection, but issuer "${id}" has no introspection settings`)
        }
        if (USES_INTROSPECTION.has(mode) && issuer.introspection) opaque.push(issuer)
        byIss.set(issuer.issuer, { issuer, mode })
      })
      if (opaque.length > 1) {
        report(
          at('auth', 'issuers'),
          `opaque tokens would be sent to the introspection endpoints of several issuers (${opaque.map((i) => i.id).join(', ')}); a route may introspect for one issuer only`,
        )
      }
      const byMethod = new Map<string, ScopeRule>()
      for (const [method, req] of Object.entries(r.auth.method_scopes ?? {})) {
        if (req) byMethod.set(method, scopeRule(req))
        if (r.match.methods && !r.match.methods.includes(method as never)) {
          report(at('auth', 'method_scopes', method), `${method} is not among this route's methods`, true)
        }
      }
      const claimRules = compileClaimRules(r.auth.claims, pattern, at('auth', 'claims'), report) ?? []
      const binding = new Map<string, BindingMode>()
      for (const id of protectedAuth.issuers) binding.set(id, bindingFor(protectedAuth.binding, (config.issuers ?? []).find((x) => x.id === id)?.binding))
      auth = {
        kind: 'protected',
        claimRules,
        binding,
        bindingMode: protectedAuth.binding,
        stepUp: compileStepUp(r.auth.step_up),
        tokens: {
          byIss,
          opaque: opaque[0] as IntrospectingIssuer | undefined,
          keepClaims,
          verifiesJwts: [...byIss.values()].some((e) => e.mode !== 'introspection'),
        },
        scopes: routeScopes(r.auth.scopes === 'none' ? null : scopeRule(r.auth.scopes), byMethod, r.match.methods === undefined),
        forwardAuthorization: r.auth.forward_authorization ?? false,
      }
    }
    if (auth.kind === 'protected' && auth.forwardAuthorization && upstream.kind !== 'builtin' && upstream.assertion?.header === 'authorization') {
      report(at('auth', 'forward_authorization'), `upstream "${upstream.id}" gets the identity assertion in Authorization, in place of the client's token`)
    }
    // The global policy is checked once (below); here it is only narrowed to the route's methods.
    const cors = r.cors
      ? compileCors(r.cors, r.match.methods ?? null, at('cors'), report)
      : r.cors === undefined && config.cors && globalCors
        ? compileCors(config.cors, r.match.methods ?? null, ['cors'], report, true)
        : undefined
    routes.push({
      id: r.id,
      methods: r.match.methods ?? null,
      host: r.match.host?.toLowerCase() ?? null,
      pattern,
      upstream,
      stripPrefix,
      auth,
      maxBodyBytes: r.max_body_bytes ?? limits.maxBodyBytes,
      methodOverride: r.method_override ?? 'refuse',
      cors,
      rateLimits: compileRouteRateLimits(rateLimits, r.rate_limits, r.rate_limit_headers, { id: r.id, isProtected: auth.kind === 'protected' }, at(), report),
      websocket: compileWebSocket(r.websocket, at('websocket'), report),
      stream: compileStream(r.stream, at('stream'), report),
    })
    if (r.websocket && upstream.kind === 'builtin') report(at('websocket'), `WebSocket tunnels go to an HTTP upstream or the echo responder; "${upstream.id}" is built in`)
  })
  resolveOverridePolicies(routes, new Set(config.routes.filter((r) => r.method_override === undefined).map((r) => r.id)))

  const protectedRoutes = routes.filter((r) => r.auth.kind === 'protected')
  const resourceMetadata = builtinRoutes(config, routes, authorizationServer, report, builtinLimits, {
    algs: dpop.algs,
    // Every protected route takes DPoP-bound tokens only.
    dpopRequired: protectedRoutes.length > 0 && protectedRoutes.every((r) => r.auth.kind === 'protected' && [...r.auth.binding.values()].every((m) => m === 'dpop')),
    certificates: seesCertificates,
  })
  const revocations = options.previous?.revocations ?? authorizationServer?.revocations ?? new RevocationList()
  const signalsSeen = options.previous?.signalsSeen ?? new ExpiringLru<true>(100_000)
  const signals = config.revocation?.signals
  if (signals) {
    const transmitters = signals.transmitters.map((t, i) => {
      parseUrl(t.jwks_uri, ['revocation', 'signals', 'transmitters', i, 'jwks_uri'], report)
      const algorithms = t.algorithms ?? ['ES256', 'RS256', 'EdDSA']
      const jwks = new RemoteJwks(t.jwks_uri, `ssf:${t.jwks_uri}`, { timeoutMs: 5000, cooldownMs: 30_000, maxAgeMs: 600_000, algorithms })
      return { issuer: t.issuer, jwks, audience: t.audience, algorithms }
    })
    const settings = {
      transmitters,
      trustedIssuers: new Set((config.issuers ?? []).map((i) => i.issuer)),
      maxTokenLifetimeSeconds: compileRevocation(config.revocation).maxTokenLifetimeSeconds,
      revocations: () => revocations,
      seen: signalsSeen,
    }
    let pattern
    try {
      pattern = parsePattern(signals.path ?? '/ssf/events')
    } catch (err) {
      if (!(err instanceof PatternError)) throw err
      report(['revocation', 'signals', 'path'], err.message)
    }
    if (pattern) {
      const respond = (req: Parameters<typeof receiveSet>[0]) => receiveSet(req, settings)
      routes.push({ id: '@ssf:events', methods: ['POST'], host: null, pattern, upstream: { kind: 'builtin', id: '@ssf:events', respond }, stripPrefix: null, auth: { kind: 'public' }, maxBodyBytes: MAX_SET_BYTES, methodOverride: 'refuse', cors: undefined, rateLimits: builtinLimits })
    }
  }

  let router: Router<CompiledRoute> | undefined
  try {
    router = new Router(routes)
  } catch (err) {
    if (!(err instanceof RouteConflictError)) throw err
    const userRoute = routeIds.has(err.routeId) ? err.routeId : err.otherRouteId
    report(['routes', routeIds.get(userRoute) ?? 0, 'match'], err.message)
  }

  const headers = compileHeaders(config, report)
  const plain = config.server?.listen !== false
  const listen = splitListen(config.server?.listen === false ? DEFAULTS.listen : (config.server?.listen ?? DEFAULTS.listen))
  if (listen.port > 65535) report(['server', 'listen'], `port ${listen.port} is out of range (0 to 65535)`)
  const adminListen = splitListen(config.admin?.listen ?? DEFAULTS.adminListen)
  if (adminListen.port > 65535) report(['admin', 'listen'], `port ${adminListen.port} is out of range (0 to 65535)`)
  checkDurations(config, report)
  const trust = config.server?.trust_proxy
  if (Array.isArray(trust)) {
    trust.forEach((entry, i) => {
      if (!isTrustEntry(entry)) report(['server', 'trust_proxy', i], `"${entry}" is not an IP address, a CIDR range (10.0.0.0/8) or one of loopback, linklocal, uniquelocal`)
    })
  }

  if (issues.length > 0 || !router) {
    throw new ConfigError(issues.sort((a, b) => a.line - b.line || a.column - b.column))
  }
  const warnings = configWarnings(config, routes, (path, message) => locator.issue(path, message))
  return Object.freeze({
    file: locator.file,
    hash: locator.hash,
    server: Object.freeze({
      plain,
      host: listen.host,
      port: listen.port,
      tls: listenerTls,
      certificates: Object.freeze({ header: certificateHeader, acceptUnverified: listenerTls?.clientCertificates === 'request' && listenerTls.ca === undefined }),
      http2,
      trustProxy: config.server?.trust_proxy ?? false,
      realm: config.server?.realm ?? DEFAULTS.realm,
      bodyLimit: config.server?.body_limit ?? DEFAULTS.bodyLimit,
      drainTimeoutMs: parseDuration(config.server?.drain_timeout ?? DEFAULTS.drainTimeout),
      caseInsensitivePaths: caseInsensitive,
      workers,
    }),
    admin: Object.freeze(adminListen),
    limits,
    router,
    issuers,
    headers,
    authorizationServer,
    assertionKeys: signer?.jwks(),
    resourceMetadata,
    notices,
    revocations,
    signalsSeen,
    revocation: compileRevocation(config.revocation),
    files: Object.freeze(files),
    warnings,
    rateLimits,
    tracing,
    dpop,
    cache: Object.freeze({
      redis,
      memoryEntries: config.cache?.memory?.max_entries ?? DEFAULTS.memoryCacheEntries,
    }),
  })
}

/**
 * Routes left at the default policy refuse method overrides where the
 * decision depends on the method: the route names methods or method rules,
 * or another route that names methods may serve some of the same paths
 * (then the method picks the route). Elsewhere an override changes nothing
 * the gateway decides, and is left alone.
 */
function resolveOverridePolicies(routes: CompiledRoute[], byDefault: ReadonlySet<string>): void {
  const hostsMeet = (a: string | null, b: string | null) => a === null || b === null || a.startsWith('*.') || b.startsWith('*.') || a === b
  const restricted = routes.filter((r) => r.methods !== null)
  routes.forEach((route) => {
    if (!byDefault.has(route.id)) return
    const sensitive =
      route.methods !== null ||
      (route.auth.kind === 'protected' && route.auth.scopes.byMethod.size > 0) ||
      restricted.some((other) => other !== route && hostsMeet(route.host, other.host) && patternsOverlap(route.pattern, other.pattern))
    if (!sensitive) (route as { methodOverride: OverridePolicy }).methodOverride = 'ignore'
  })
}

/** Route ids that would read as something else in metrics and logs. */
const RESERVED_ROUTE_IDS = new Set(['none', 'unknown', 'other', 'all', 'default'])

/** Legal configurations that are probably not what their author meant. */
function configWarnings(config: Config, routes: readonly CompiledRoute[], at: (path: FieldPath, message: string) => ConfigIssue): ConfigIssue[] {
  const out: ConfigIssue[] = []
  config.routes.forEach((r, i) => {
    const route = routes.find((x) => x.id === r.id)
    if (route && route.auth.kind === 'public' && route.host === null && route.pattern.segments.length === 1 && route.pattern.segments[0]!.kind === 'wildcard') {
      out.push(at(['routes', i, 'match', 'path'], 'a public route for every path: any path no other route serves (and every method a route does not name) is open without a token'))
    }
    if (RESERVED_ROUTE_IDS.has(r.id.toLowerCase())) out.push(at(['routes', i, 'id'], `"${r.id}" reads as a reserved word in metrics and logs (route "none" means no route matched); choose another id`))
    // Step-up asks how a user logged in; the built-in server issues client-credentials tokens, which never say.
    const builtIn = config.authorization_server?.issuer
    if (r.auth !== 'public' && r.auth.step_up && r.auth.issuers.every((id) => (config.issuers ?? []).find((x) => x.id === id)?.issuer === builtIn)) {
      out.push(at(['routes', i, 'auth', 'step_up'], 'step-up needs tokens issued for users (with acr and auth_time); this route trusts only the built-in authorization server, whose client-credentials tokens never carry them, so every request is refused'))
    }
    // With CORS the gateway answers preflights itself: a public route for OPTIONS only opens OPTIONS to anyone, for nothing.
    if (r.auth === 'public' && r.match.methods?.length === 1 && r.match.methods[0] === 'OPTIONS' && route && routes.some((o) => o !== route && o.cors !== undefined && patternsOverlap(o.pattern, route.pattern))) {
      out.push(at(['routes', i, 'match', 'methods'], 'a public route for OPTIONS alone beside routes with CORS: the gateway answers their preflights itself; this route only forwards other OPTIONS requests without a token'))
    }
  })
  // Identity headers are only as safe as the network they cross.
  const warnedUpstreams = new Set<string>()
  config.routes.forEach((r) => {
    const u = config.upstreams[r.upstream]
    if (r.auth === 'public' || !u || !('url' in u) || u.assertion !== undefined || u.tls !== undefined || warnedUpstreams.has(r.upstream)) return
    let url: URL
    try {
      url = new URL(u.url)
    } catch {
      return
    }
    if (url.protocol !== 'http:' || isLoopback(url.hostname)) return
    warnedUpstreams.add(r.upstream)
    out.push(at(['upstreams', r.upstream, 'url'], 'identity headers go to this upstream over plain http with nothing to show they came from the gateway: anyone who reaches it can send them; add assertion: true (signed identity assertions) or https with tls (mutual TLS), or keep it behind a network policy (README, "Upstream trust")'))
  })
  // DPoP state that is per process where several processes serve.
  const workers = config.server?.workers ?? 1
  if (config.dpop?.nonce && config.dpop.nonce.secret === undefined && config.cache?.redis) {
    out.push(at(['dpop', 'nonce'], 'nonces without a secret are accepted only by the replica that made them; with several replicas (Redis is configured), give them one secret'))
  }
  if (!config.cache?.redis && workers !== 1) {
    const dpopRoute = config.routes.findIndex((r) => r.auth !== 'public' && (r.auth.binding === 'dpop' || r.auth.binding === 'any'))
    if (dpopRoute >= 0) out.push(at(['routes', dpopRoute, 'auth', 'binding'], 'without Redis each worker remembers only the DPoP proofs it saw: a proof replayed at another worker passes within its max_age; configure cache.redis'))
  }
  const usedUpstreams = new Set(config.routes.map((r) => r.upstream))
  for (const id of Object.keys(config.upstreams)) if (!usedUpstreams.has(id)) out.push(at(['upstreams', id], `upstream "${id}" is used by no route`))
  const usedIssuers = new Set(config.routes.flatMap((r) => (r.auth === 'public' ? [] : r.auth.issuers)))
  ;(config.issuers ?? []).forEach((issuer, i) => {
    if (!usedIssuers.has(issuer.id)) out.push(at(['issuers', i, 'id'], `issuer "${issuer.id}" is trusted by no route`))
    const plain = (url: string | undefined) => url !== undefined && /^http:\/\//i.test(url) && !isLoopback(new URL(url).hostname)
    for (const [path, url] of [[['jwks_uri'], issuer.jwks_uri], [['introspection', 'endpoint'], issuer.introspection?.endpoint], [['issuer'], issuer.discovery ? issuer.issuer : undefined]] as const) {
      if (plain(url)) out.push(at(['issuers', i, ...path], 'plain http outside loopback (allowed by allow_insecure_http): keys or token answers can be replaced in transit'))
    }
  })
  return out
}

/** Ranges of durations (ms) by field name; limits.ts checks its own. Other durations: 0 to 24h. */
const DURATION_RANGES: Readonly<Record<string, readonly [number, number]>> = {
  timeout: [1, 600_000],
  clock_skew: [0, 600_000],
  cooldown: [0, 3_600_000],
  max_age: [100, 86_400_000],
  max_ttl: [0, 86_400_000],
  negative_ttl: [0, 3_600_000],
  drain_timeout: [0, 3_600_000],
  token_lifetime: [1000, 86_400_000],
  window: [100, 86_400_000],
}

function describeMs(ms: number): string {
  return ms % 3_600_000 === 0 && ms > 0 ? `${ms / 3_600_000}h` : ms % 60_000 === 0 && ms > 0 ? `${ms / 60_000}m` : ms % 1000 === 0 && ms > 0 ? `${ms / 1000}s` : `${ms}ms`
}

/**
 * Every duration of the file within a sane range: a zero timeout that
 * refuses everything, or a skew of years that accepts any expired token, is
 * a located error. Node timers also overflow past 24.8 days (and fire at once).
 */
function checkDurations(config: Config, report: (path: FieldPath, message: string) => void): void {
  const walk = (value: unknown, path: Array<string | number>) => {
    if (Array.isArray(value)) return value.forEach((v, i) => walk(v, [...path, i]))
    if (value === null || typeof value !== 'object') return
    for (const [key, v] of Object.entries(value)) {
      if (path.length === 0 && (key === 'limits' || key === 'dpop')) continue
      if (key === 'websocket' || key === 'stream') continue // websocket.ts, stream.ts
      if (key === 'queue_timeout') continue // limits.ts
      if (typeof v === 'string' && /^[0-9]+(ms|s|m|h)$/.test(v)) {
        const [min, max] = DURATION_RANGES[key] ?? [0, 86_400_000]
        const ms = parseDuration(v)
        if (ms < min || ms > max) report([...path, key], `must be between ${describeMs(min)} and ${describeMs(max)}, got ${v}`)
      } else {
        walk(v, [...path, key])
      }
    }
  }
  walk(config, [])
}

/** A URL, or a located error (and undefined): the schema's pattern lets through what the URL parser refuses ("http://[zz"). */
function parseUrl(value: string, path: FieldPath, report: (path: FieldPath, message: string) => void): URL | undefined {
  try {
    const url = new URL(value)
    if (url.port !== '' && Number(url.port) > 65535) throw new Error('port out of range')
    return url
  } catch {
    report(path, `"${value.length > 80 ? value.slice(0, 77) + '…' : value}" is not a valid URL`)
    return undefined
  }
}

/** The endpoints the gateway serves itself, as public routes (ids start with "@", which config ids cannot). */
function builtinRoutes(
  config: Config,
  routes: CompiledRoute[],
  as: AuthorizationServer | undefined,
  report: (path: FieldPath, message: string) => void,
  rateLimits: RouteRateLimits | undefined,
  senders: { readonly algs: readonly string[]; readonly dpopRequired: boolean; readonly certificates: boolean },
): string | undefined {
  let failed = false
  const add = (id: string, path: string, methods: string[], respond: Extract<Target, { kind: 'builtin' }>['respond']) => {
    let pattern
    try {
      pattern = parsePattern(path)
    } catch (err) {
      if (!(err instanceof PatternError)) throw err
      failed = true
      report(id.startsWith('@as') ? ['authorization_server', 'issuer'] : ['protected_resource', 'resource'], `its path cannot be served (${err.message})`)
      return
    }
    routes.push({ id, methods, host: null, pattern, upstream: { kind: 'builtin', id, respond }, stripPrefix: null, auth: { kind: 'public' }, maxBodyBytes: config.server?.body_limit ?? DEFAULTS.bodyLimit, methodOverride: 'refuse', cors: undefined, rateLimits })
  }
  if (as) {
    add('@as:token', as.paths.token, ['POST'], (req) => as.token(req))
    add('@as:introspect', as.paths.introspection, ['POST'], (req) => as.introspect(req))
    add('@as:revoke', as.paths.revocation, ['POST'], (req) => as.revoke(req))
    add('@as:jwks', as.paths.jwks, ['GET', 'HEAD'], () => as.jwks())
    add('@as:metadata', as.paths.metadata, ['GET', 'HEAD'], () => as.metadata())
  }
  const pr = config.protected_resource
  if (!pr) return undefined
  const resource = parseUrl(pr.resource, ['protected_resource', 'resource'], report)
  if (!resource || failed) return undefined
  const resourcePath = resource.pathname.replace(/\/+$/, '')
  const path = `/.well-known/oauth-protected-resource${resourcePath}`
  const scopes = new Set<string>()
  for (const r of routes) {
    if (r.auth.kind !== 'protected') continue
    for (const rule of [r.auth.scopes.all, ...r.auth.scopes.byMethod.values()]) for (const sc of [...(rule?.allOf ?? []), ...(rule?.anyOf ?? [])]) scopes.add(sc)
  }
  const body = {
    resource: pr.resource,
    authorization_servers: pr.authorization_servers ?? [...new Set((config.issuers ?? []).map((i) => i.issuer))],
    scopes_supported: [...scopes].sort(),
    bearer_methods_supported: ['header'],
    ...(pr.resource_name ? { resource_name: pr.resource_name } : {}),
    // RFC 9728 §2: what sender-constrained tokens this resource takes.
    dpop_signing_alg_values_supported: [...senders.algs],
    dpop_bound_access_tokens_required: senders.dpopRequired,
    tls_client_certificate_bound_access_tokens: senders.certificates,
  }
  add('@protected-resource', path, ['GET', 'HEAD'], () => ({ status: 200, headers: { 'cache-control': 'public, max-age=300' }, body }))
  return failed ? undefined : resource.origin + path
}

async function compileAuthorizationServer(
  config: Config,
  baseDir: string,
  report: (path: FieldPath, message: string) => void,
  options: CompileOptions,
  notices: string[],
  dpop: CompiledDpop,
  seesCertificates: boolean,
): Promise<AuthorizationServer | undefined> {
  const c = config.authorization_server
  if (!c) return undefined
  if (!parseUrl(c.issuer, ['authorization_server', 'issuer'], report)) return undefined
  const previous = options.previous?.authorizationServer
  const keys: SigningKey[] = []
  for (const [i, k] of (c.keys ?? []).entries()) {
    try {
      keys.push(await loadSigningKey(resolve(baseDir, k.file), k.kid, k.alg))
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      report(['authorization_server', 'keys', i, 'file'], e.code === 'ENOENT' ? `key file not found: ${resolve(baseDir, k.file)}` : `unusable signing key: ${e.message}`)
    }
  }
  if (new Set(keys.map((k) => k.kid)).size !== keys.length) report(['authorization_server', 'keys'], 'two signing keys have the same kid')
  if (!c.keys) {
    // Development only: keep the key across reloads, so that tokens stay valid.
    const reuse = previous && previous.settings.issuer === c.issuer && previous.generatedKey
    keys.push(reuse ? previous.settings.keys[0]! : generateSigningKey())
    if (!reuse) notices.push('authorization_server has no keys configured: generated an ES256 signing key for this process; its tokens stop verifying at restart (development only)')
  }
  const clients = new Map<string, RegisteredClient>()
  const defaultLifetime = parseDuration(c.token_lifetime ?? DEFAULTS.asTokenLifetime) / 1000
  c.clients.forEach((client, i) => {
    const at = (...rest: FieldPath) => ['authorization_server', 'clients', i, ...rest]
    if (clients.has(client.client_id)) report(at('client_id'), `duplicate client_id "${client.client_id}"`)
    const secret = parseSecretHash(client.secret_hash)
    if (!secret) {
      report(at('secret_hash'), 'not a hash made by `gateway hash-secret` (scrypt cost out of range)')
      return
    }
    for (const [j, sc] of (client.default_scopes ?? []).entries()) {
      if (!client.scopes.includes(sc)) report(at('default_scopes', j), `"${sc}" is not among the client's scopes`)
    }
    clients.set(client.client_id, {
      clientId: client.client_id,
      secret,
      scopes: new Set(client.scopes),
      defaultScopes: client.default_scopes ?? [],
      audiences: client.audiences,
      lifetimeSeconds: client.token_lifetime ? parseDuration(client.token_lifetime) / 1000 : defaultLifetime,
      mayIntrospect: client.introspect ?? false,
    })
  })
  if (keys.length === 0) return undefined
  const throttle = previous?.throttle ?? new FailureThrottle()
  const verifier = previous?.verifier ?? new SecretVerifier()
  const revocations = options.previous?.revocations ?? new RevocationList()
  return new AuthorizationServer(
    {
      issuer: c.issuer,
      keys,
      clients,
      throttle: {
        failures: c.throttle?.failures ?? DEFAULTS.asThrottleFailures,
        clientFailures: c.throttle?.client_failures ?? DEFAULTS.asThrottleClientFailures,
        windowMs: parseDuration(c.throttle?.window ?? DEFAULTS.asThrottleWindow),
      },
      dpop: dpop.proof,
      certificateBound: seesCertificates,
    },
    throttle,
    verifier,
    !c.keys,
    revocations,
  )
}

function scopeRule(req: ScopeRequirementConfig): ScopeRule {
  return Object.freeze({ allOf: Object.freeze([...(req.all_of ?? [])]), anyOf: Object.freeze([...(req.any_of ?? [])]) })
}

async function compileIssuers(
  config: Config,
  baseDir: string,
  report: (path: FieldPath, message: string) => void,
  options: CompileOptions,
  keepClaims: readonly string[],
): Promise<Map<string, IssuerRuntime>> {
  const out = new Map<string, IssuerRuntime>()
  const list = config.issuers ?? []
  for (let i = 0; i < list.length; i++) {
    const c = list[i]!
    const at = (...rest: FieldPath) => ['issuers', i, ...rest]
    if (out.has(c.id)) report(at('id'), `duplicate issuer id "${c.id}"`)
    const insecureOk = c.allow_insecure_http ?? false
    let urlsOk = true
    const checkUrl = (url: string, path: FieldPath) => {
      const u = parseUrl(url, path, report)
      if (!u) {
        urlsOk = false
        return
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:') {
        urlsOk = false
        report(path, 'must be an http or https URL')
      } else if (u.protocol === 'http:' && !isLoopback(u.hostname) && !insecureOk) {
        report(path, 'plain http can be read and replaced in transit; use https (or set allow_insecure_http: true)')
      }
    }
    if (c.jwks_uri) checkUrl(c.jwks_uri, at('jwks_uri'))
    if (c.introspection?.endpoint) checkUrl(c.introspection.endpoint, at('introspection', 'endpoint'))
    if (c.discovery) checkUrl(c.issuer, at('issuer'))
    if (!urlsOk) continue
    if (c.introspection && !c.introspection.endpoint && !c.discovery) {
      report(at('introspection'), 'introspection needs an endpoint, or discovery: true on the issuer')
    }

    const scopeClaims: ClaimPath[] = []
    for (const [k, text] of (c.scope_claims ?? ['scope', 'scp']).entries()) {
      const path = parseClaimPath(text)
      if (path) scopeClaims.push(path)
      else report(at('scope_claims', k), `"${text}" is not a claim path (dotted names; a name with dots in double quotes)`)
    }
    // Introspection results keep what the scope claims need besides "scope".
    const issuerKeepClaims = [...new Set([...keepClaims, ...scopeClaims.map((p) => p[0]!).filter((n) => n !== 'scope')])]
    const hasKeys = Boolean(c.jwks_uri || c.keys || c.discovery)
    const mode: ValidationMode = c.validation ?? (c.introspection ? (hasKeys ? 'auto' : 'introspection') : 'jwt')
    if (!hasKeys && !c.introspection) {
      report(at(), 'an issuer needs jwks_uri, keys, discovery or introspection to verify tokens')
      continue
    }
    if (USES_JWT.has(mode) && !hasKeys) report(at('validation'), `validation "${mode}" needs jwks_uri, keys or discovery`)
    if (USES_INTROSPECTION.has(mode) && !c.introspection) report(at('validation'), `validation "${mode}" needs introspection settings`)

    const discovery = c.discovery
      ? new Discovery(c.issuer, parseDuration(DEFAULTS.discoveryTimeout), (url) => {
          const u = new URL(url)
          if (u.protocol !== 'https:' && !(u.protocol === 'http:' && (isLoopback(u.hostname) || insecureOk))) {
            throw new Error(`discovered URL ${url} is not https`)
          }
        })
      : undefined

    const staticKeys: JWK[] = []
    for (const [k, spec] of (c.keys ?? []).entries()) {
      try {
        staticKeys.push(...(await loadStaticKey(resolve(baseDir, spec.file), spec, c.algorithms ?? DEFAULTS.algorithms)))
      } catch (err) {
        const e = err as NodeJS.ErrnoException
        report(at('keys', k, 'file'), e.code === 'ENOENT' ? `key file not found: ${resolve(baseDir, spec.file)}` : `unusable key file: ${e.message}`)
      }
    }
    const jwks = c.jwks_uri || discovery ? reuseOrCreateJwks(c, options, discovery) : undefined
    let getKey
    if (hasKeys) {
      try {
        getKey = combineKeySources(staticKeys.length > 0 ? { keys: staticKeys } : undefined, jwks?.getKey)
      } catch {
        continue // the key file problem is already reported
      }
    }
    const observer = options.observer
    const introspection = c.introspection
      ? new IntrospectionClient(c.id, c.issuer, {
          endpoint: c.introspection.endpoint ?? (() => discovery!.endpoint('introspection_endpoint')),
          clientId: c.introspection.client_id,
          clientSecret: c.introspection.client_secret,
          authMethod: c.introspection.auth_method ?? 'client_secret_basic',
          timeoutMs: parseDuration(c.introspection.timeout ?? DEFAULTS.introspectionTimeout),
          maxTtlMs: parseDuration(c.introspection.max_ttl ?? DEFAULTS.introspectionMaxTtl),
          negativeTtlMs: parseDuration(c.introspection.negative_ttl ?? DEFAULTS.introspectionNegativeTtl),
          requireAudience: c.introspection.require_audience ?? true,
          keepClaims: issuerKeepClaims,
          integrityKey: config.cache?.redis?.integrity_key,
          ...(observer ? { onCall: (outcome: 'active' | 'inactive' | 'error', error?: unknown) => observer.introspection(c.id, outcome, error) } : {}),
        })
      : undefined
    out.set(
      c.id,
      Object.freeze({
        id: c.id,
        issuer: c.issuer,
        audiences: Object.freeze([...c.audiences]),
        algorithms: Object.freeze([...(c.algorithms ?? DEFAULTS.algorithms)]),
        clockSkewSeconds: parseDuration(c.clock_skew ?? DEFAULTS.clockSkew) / 1000,
        requireTyp: c.require_typ,
        scopeClaims: Object.freeze(scopeClaims),
        getKey,
        keyVersion: jwks ? () => jwks.version : () => 0,
        jwks,
        introspection,
        mode,
        hasKeys,
      }),
    )
  }
  return out
}

function reuseOrCreateJwks(c: IssuerConfig, options: CompileOptions, discovery: Discovery | undefined): RemoteJwks {
  const jwksOptions = {
    timeoutMs: parseDuration(c.jwks?.timeout ?? DEFAULTS.jwksTimeout),
    cooldownMs: parseDuration(c.jwks?.cooldown ?? DEFAULTS.jwksCooldown),
    maxAgeMs: parseDuration(c.jwks?.max_age ?? DEFAULTS.jwksMaxAge),
    algorithms: c.algorithms ?? DEFAULTS.algorithms,
  }
  const source = c.jwks_uri ?? `discovery:${c.issuer}`
  const previous = options.previous?.issuers.get(c.id)?.jwks
  if (previous && previous.source === source && previous.sameOptions(jwksOptions)) return previous
  const observer = options.observer
  const url = c.jwks_uri ?? (() => discovery!.endpoint('jwks_uri'))
  return new RemoteJwks(url, source, {
    ...jwksOptions,
    ...(observer
      ? {
          onFetch: (outcome: 'success' | 'failure', error?: unknown) => observer.jwksFetch(c.id, outcome, error),
          onRejectedKeys: (rejected: readonly RejectedKey[]) => observer.jwksKeysRejected(c.id, rejected),
        }
      : {}),
  })
}

function compileHeaders(config: Config, report: (path: FieldPath, message: string, atKey?: boolean) => void): HeaderPolicy {
  const h = config.identity_headers ?? {}
  const names = {
    clientId: (h.client_id ?? DEFAULTS.identityHeaders.client_id).toLowerCase(),
    subject: (h.subject ?? DEFAULTS.identityHeaders.subject).toLowerCase(),
    scopes: (h.scopes ?? DEFAULTS.identityHeaders.scopes).toLowerCase(),
    issuer: (h.issuer ?? DEFAULTS.identityHeaders.issuer).toLowerCase(),
    claims: Object.entries(h.claims ?? {}).map(([claim, header]) => [claim, header.toLowerCase()] as const),
  }
  const seen = new Map<string, string>()
  const check = (path: FieldPath, header: string) => {
    const folded = foldHeaderName(header)
    if (RESERVED_HEADERS.has(folded) || RESERVED_PREFIXES.some((p) => folded.startsWith(p))) {
      report(path, `"${header}" is a header the gateway cannot hand over to identity`)
    }
    const other = seen.get(folded)
    if (other) report(path, `"${header}" is the same header as ${other} once case and punctuation are folded`)
    seen.set(folded, path.join('.'))
  }
  check(['identity_headers', 'client_id'], names.clientId)
  check(['identity_headers', 'subject'], names.subject)
  check(['identity_headers', 'scopes'], names.scopes)
  check(['identity_headers', 'issuer'], names.issuer)
  for (const [claim, header] of names.claims) check(['identity_headers', 'claims', claim], header)
  // A header carrying identity assertions never reaches an upstream as a client sent it, on any route.
  const assertionHeaders = Object.values(config.upstreams).flatMap((u) => (typeof u.assertion === 'object' && u.assertion.header && u.assertion.header.toLowerCase() !== 'authorization' ? [u.assertion.header] : []))
  // So does the header a TLS-terminating proxy passes client certificates in.
  const certificateHeader = config.server?.client_certificate_header ? [config.server.client_certificate_header.name] : []
  return buildHeaderPolicy(names, [...(h.strip_request_headers ?? []), ...assertionHeaders, ...certificateHeader])
}
