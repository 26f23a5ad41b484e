import type { FastifyReply, FastifyRequest } from 'fastify'
import type { CompiledConfig } from './config/compile.js'
import { GatewayError } from './errors.js'
import { authenticate, type AuthnContext } from './pipeline/authn/authenticate.js'
import type { Principal } from './pipeline/authn/principal.js'
import { authorize } from './pipeline/authz/scopes.js'
import { extractBearer, hasAccessTokenParam } from './pipeline/extract/bearer.js'
import { deliver, readWhole, sentPath, type FailRequest, type Forwarder } from './pipeline/forward/upstream.js'
import { identityHeaders } from './pipeline/mutate/headers.js'
import { canonicalHost, isHostValue, originForm, refuseMalformedH2Fields, refuseUpgrade } from './pipeline/normalize/host.js'
import { canonicalTarget } from './pipeline/normalize/path.js'
import { checkOverride, formOverride, requestedOverride } from './pipeline/method/override.js'
import { announcesBody, isEncoded, mediaType, refuseDeclaredOversize } from './pipeline/body/receive.js'
import { MultipartScanner, multipartBoundary } from './pipeline/body/multipart.js'
import { corsHeaders, isPreflight, preflight, type CorsHeaders } from './pipeline/cors/cors.js'
import { checkClaimRules } from './pipeline/policy/claim-rules.js'
import { checkStepUp } from './pipeline/policy/step-up.js'
import { checkNotRevoked } from './pipeline/authn/revocation.js'
import type { RateLimiter, RateLimitHeaders } from './pipeline/ratelimit/limiter.js'
import type { GatewayTracer, RequestTrace } from './observe/tracing.js'
import { checkBinding, presentedProof, type ProvenBinding } from './pipeline/binding/binding.js'
import { clientCertificate } from './oauth/client-certificate.js'
import { normalizeHtu, type VerifiedProof } from './oauth/dpop-proof.js'
import type { ReplayGuard } from './pipeline/binding/replay.js'
import { checkHandshake, isWebSocketUpgrade, openTunnel, subprotocolToken, type TunnelObserver } from './pipeline/websocket/tunnel.js'
import { acceptEcho } from './pipeline/websocket/echo.js'
import { rewriteRequestHeaders } from './pipeline/mutate/headers.js'
import { BearerToken } from './pipeline/extract/bearer.js'
import type { Socket } from 'node:net'
import type { IncomingMessage } from 'node:http'

/** Reads the configuration in force; each request takes it once, at its start. */
export interface ConfigSource {
  readonly current: CompiledConfig
}

/** What the request log line and the metrics report of a request. */
export interface RequestOutcome {
  routeId: string | undefined
  /** The matched route's pattern (http.route of its trace). */
  routePattern: string | undefined
  path: string | undefined
  principal: Principal | undefined
  /** How the token was authenticated, and how long authentication and authorization took. */
  auth: { method: 'jwt' | 'introspection'; cache: string; seconds: number } | undefined
  /** The HTTP upstream the request was handed to, and when (performance.now()). */
  forwarded: { upstream: string; at: number } | undefined
  /** `allow` once every check passed and the request is forwarded. */
  decision: 'allow' | 'deny' | undefined
  /** Why the request was refused or failed, when it was. */
  reason: string | undefined
  /** The claim rule that refused it, when one did. */
  rule: string | undefined
  /** The rate limit that refused it, when one did. */
  limit: string | undefined
  /** CORS headers every answer to this request carries (the route has CORS). */
  cors: CorsHeaders | undefined
  /** The RateLimit-Policy and RateLimit members every answer carries (the route has limits and their headers). */
  rateLimit: RateLimitHeaders | undefined
  /** The request's trace, when tracing is on. */
  trace: RequestTrace | undefined
  /** What the token was bound to and proved (none: an unbound bearer token), once checked. */
  binding: ProvenBinding | undefined
  /** Challenges use the DPoP scheme: the request used it, or the route needs DPoP. */
  dpopChallenge: boolean
  /** A newer DPoP nonce every answer carries (the client used the previous one). */
  dpopNonce: string | undefined
  /** The connection's byte count when the request began (its head already read). */
  readAt: number
  /** The client's address (after trusted proxies), taken when the request began: an HTTP/2 stream forgets it once closed. */
  ip: string
}

declare module 'fastify' {
  interface FastifyRequest {
    outcome: RequestOutcome | null
  }
}

/**
 * The sockets of requests that came as HTTP upgrades (server 'upgrade'
 * events, see app.ts): a WebSocket route takes the socket over once the
 * request is allowed. Requests not in here never tunnel.
 */
export const upgradeSockets = new WeakMap<IncomingMessage, { readonly socket: Socket; readonly head: Buffer }>()

/** What sender-constrained tokens need besides the configuration: kept across reloads. */
export interface SenderChecks {
  /** DPoP proofs already used (across replicas with Redis). */
  readonly replay: ReplayGuard
  /** Whether the peer is a trusted proxy (whose client certificate header is believed). */
  readonly trustedPeer: (address: string) => boolean
}

/**
 * The request pipeline, in order:
 * normalise → match (a CORS preflight is answered here) → limit (by address)
 * → extract token (and DPoP proof) → authenticate → binding → step-up →
 * scopes → claim rules → limit (by identity) and proof replay → headers →
 * forward.
 * Each stage is a module of its own under src/pipeline/; this is the only
 * place that joins them. Any stage failing throws a GatewayError, answered by
 * the app's single error handler; nothing is forwarded after a failure.
 */
export function createHandler(source: ConfigSource, authn: AuthnContext, limiter: RateLimiter, forwarder: Forwarder, fail: FailRequest, senders: SenderChecks, tunnels?: TunnelObserver, tracer?: GatewayTracer) {
  return async function handle(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
    const config = source.current
    const outcome = request.outcome!

    refuseMalformedH2Fields(request.raw.httpVersionMajor, request.raw.rawHeaders)
    const target = canonicalTarget(originForm(request.raw.url ?? '/', request.raw.rawHeaders), config.server.caseInsensitivePaths)
    // A WebSocket handshake is decided like any request; others upgrades are refused (h2c ignored).
    const upgrade = isWebSocketUpgrade(request.raw) ? upgradeSockets.get(request.raw) : undefined
    if (upgrade === undefined) {
      refuseUpgrade(request.headers.upgrade)
      // An ignored upgrade (h2c) that came as one: Node handed its body over as raw bytes, so it has none to forward.
      if (upgradeSockets.has(request.raw) && announcesBody(request.raw)) throw new GatewayError('upgrade_unsupported', 'an upgrade request with a body is not supported')
    }
    outcome.path = target.path

    const host = canonicalHost(request.hostname)
    const method = request.method
    // A preflight is about the request it announces: the route that would serve that one answers it, if it has CORS.
    if (isPreflight(method, request.headers)) {
      const announced = config.router.match(request.headers['access-control-request-method'] as string, host, target.path)
      const cors = announced?.route.cors
      if (cors !== undefined) {
        outcome.routeId = announced!.route.id
        outcome.routePattern = announced!.route.pattern.source
        const headers = preflight(cors, request.headers.origin!, request.headers['access-control-request-method'] as string, request.headers['access-control-request-headers'])
        outcome.decision = 'allow'
        outcome.reason = 'cors_preflight'
        return reply.code(204).headers(headers).send()
      }
    }
    const match = config.router.match(method, host, target.path)
    if (!match) throw new GatewayError('route_not_found', 'no route matches this request')
    const route = match.route
    outcome.routeId = route.id
    outcome.routePattern = route.pattern.source
    if (route.cors !== undefined) outcome.cors = corsHeaders(route.cors, request.headers.origin)
    if (upgrade !== undefined) {
      if (route.websocket === undefined) throw new GatewayError('upgrade_unsupported', 'this route does not accept WebSocket upgrades')
      checkHandshake(request.raw)
      // Cross-site WebSocket hijacking: a page's browser sends the victim's cookies; its Origin must be allowed.
      // (Clients that are not browsers send no Origin, and are not at that risk.)
      if (route.cors !== undefined && request.headers.origin !== undefined && outcome.cors?.['access-control-allow-origin'] === undefined) {
        throw new GatewayError('cors_refused', 'this origin may not open WebSockets here')
      }
    }
    // TRACE echoes the request (credentials included) back: only where a route names it.
    if (method === 'TRACE' && route.methods?.includes('TRACE') !== true) throw new GatewayError('method_not_allowed', 'TRACE is not allowed here')
    const override = route.methodOverride === 'ignore' ? undefined : requestedOverride(request.raw.rawHeaders, target.query)
    // Allowed overrides are served by this very route, under the rules of both methods.
    const servedAs = (m: string) => {
      if (config.router.match(m, host, target.path)?.route !== route) throw new GatewayError('method_override_refused', `this route does not serve ${m}`)
    }
    checkOverride(override, route.methodOverride, servedAs)
    refuseDeclaredOversize(request.raw, route.maxBodyBytes)
    // Limits by address run before the token is looked at: they protect the verifier.
    const limits = route.rateLimits
    if (limits !== undefined) {
      if (limits.headers) outcome.rateLimit = { policy: [], current: [] }
      if (limits.byAddress.length > 0) {
        const waiting = limiter.check(route.id, limits.byAddress, { ip: request.ip, principal: undefined }, outcome.rateLimit, outcome.trace?.calls)
        if (waiting !== undefined) await waiting
      }
    }

    let identity: Readonly<Record<string, string>> | null = null
    let principal: Principal | undefined
    let forwardAuthorization = false
    let replayed: Promise<void> | undefined
    let protocols: { readonly rest: string | undefined } | undefined
    const raw = request.raw
    const certificate = () => clientCertificate(raw, config.server.certificates, () => senders.trustedPeer(raw.socket?.remoteAddress ?? ''))
    if (route.auth.kind === 'protected') {
      if (route.auth.bindingMode === 'dpop') outcome.dpopChallenge = true
      // Browsers cannot set Authorization on a WebSocket: the route may take the token as a subprotocol.
      const fromProtocol = upgrade !== undefined && route.websocket?.subprotocolToken ? subprotocolToken(request.headers['sec-websocket-protocol']) : undefined
      if (fromProtocol !== undefined && (request.headers.authorization !== undefined || hasAccessTokenParam(target.query))) throw new GatewayError('token_duplicated', 'the request carries an access token in more than one place')
      protocols = fromProtocol
      const token = fromProtocol !== undefined ? new BearerToken(fromProtocol.token) : extractBearer({
        rawHeaders: request.raw.rawHeaders,
        query: target.query,
        connection: request.raw.socket ?? undefined,
      })
      const started = performance.now()
      // A DPoP proof is checked before the token is looked at: a bad one costs no key fetch or introspection.
      let proof: VerifiedProof | undefined
      if (token.scheme === 'dpop') {
        outcome.dpopChallenge = true
        const htu = normalizeHtu(`${forwardedProto(request)}://${request.host}${(request.raw.url ?? '/').split('?', 1)[0]}`)
        const presented = presentedProof(request.raw.rawHeaders, token.value, method, request.host ? htu : undefined, config.dpop, (authn.now ?? Date.now)() / 1000)
        proof = presented.proof
        outcome.dpopNonce = presented.freshNonce
      }
      const tokens = route.auth.tokens
      const trace = outcome.trace
      const authenticated = tracer !== undefined && trace !== undefined ? await tracer.within(trace, 'authenticate', (calls) => authenticate(token, tokens, authn, calls)) : await authenticate(token, tokens, authn)
      principal = authenticated.principal
      outcome.principal = principal
      outcome.binding = checkBinding(principal, route.auth.binding.get(principal.issuerId) ?? 'optional', { proof, certificate })
      checkNotRevoked(principal, config.revocations, () => token.value)
      if (route.auth.stepUp !== undefined) checkStepUp(principal, route.auth.stepUp, (authn.now ?? Date.now)() / 1000, config.issuers.get(principal.issuerId)?.clockSkewSeconds ?? 0)
      authorize(principal, route.auth.scopes, method)
      if (override !== undefined) authorize(principal, route.auth.scopes, override)
      if (route.auth.claimRules.length > 0) checkClaimRules(principal, route.auth.claimRules, match.params, config.server.caseInsensitivePaths)
      // Only a proof that passed every other check is remembered: its Redis command leaves with the rate limit's.
      if (proof !== undefined) replayed = senders.replay.reserve(principal.issuerId, proof.jkt, proof.jti, config.dpop.replay, outcome.trace?.calls)
      outcome.auth = { method: authenticated.method, cache: authenticated.cache, seconds: (performance.now() - started) / 1000 }
      identity = identityHeaders(principal, config.headers.identity)
      forwardAuthorization = route.auth.forwardAuthorization
    }
    // Limits by identity count authorized requests only.
    if (limits !== undefined && limits.byIdentity.length > 0) {
      const waiting = limiter.check(route.id, limits.byIdentity, { ip: request.ip, principal }, outcome.rateLimit, outcome.trace?.calls)
      if (waiting !== undefined) {
        if (replayed !== undefined) await Promise.all([waiting, replayed])
        else await waiting
        replayed = undefined
      }
    }
    if (replayed !== undefined) await replayed

    // Allowed so far, from the headers alone. A form body is read only now
    // (bounded) where it could carry a second token or a method override.
    const bounds = { maxBytes: route.maxBodyBytes, idleMs: config.limits.bodyIdleTimeoutMs }
    let read: Buffer | undefined
    let inspect: ((chunk: Buffer) => void) | undefined
    const checksToken = route.auth.kind === 'protected'
    const type = (checksToken || route.methodOverride !== 'ignore') && announcesBody(request.raw) ? mediaType(request.raw) : undefined
    if ((type === 'application/x-www-form-urlencoded' || type === 'multipart/form-data') && isEncoded(request.raw)) {
      throw new GatewayError('body_encoding_unsupported', 'a form body on this route must not be content-encoded')
    }
    if (type === 'multipart/form-data') inspect = multipartCheck(request.headers['content-type']!, checksToken, route.methodOverride !== 'ignore')
    if (type === 'application/x-www-form-urlencoded') {
      read = await readWhole(request, reply, { bounds: { ...bounds, maxBytes: Math.min(bounds.maxBytes, config.server.bodyLimit) } })
      const form = read.toString('latin1')
      if (checksToken && hasAccessTokenParam(form)) throw new GatewayError('token_duplicated', 'the request carries an access token in more than one place')
      const fromBody = formOverride(form)
      if (fromBody !== undefined && override !== undefined && fromBody !== override) throw new GatewayError('method_override_refused', 'the request asks for two different method overrides')
      checkOverride(fromBody, route.methodOverride, (m) => {
        servedAs(m)
        if (principal && route.auth.kind === 'protected') authorize(principal, route.auth.scopes, m)
      })
    }

    const set: Record<string, string> = {
      'x-forwarded-for': forwardedFor(request),
      'x-forwarded-proto': forwardedProto(request),
      'x-request-id': request.id,
    }
    if (override !== undefined) set['x-http-method-override'] = override
    const assertion = route.upstream.kind === 'builtin' ? undefined : route.upstream.assertion
    if (assertion !== undefined && principal !== undefined) {
      const binding = assertion.bindRequest ? { method, path: sentPath(route, target.path), query: target.query } : undefined
      const value = assertion.signer.assertion(principal, assertion.audience, binding)
      set[assertion.header] = assertion.header === 'authorization' ? `Bearer ${value}` : value
    }
    // An HTTP/1.0 request may come without Host: then there is none to pass on.
    // A trusted proxy's X-Forwarded-Host, when it names a host; else the request's own.
    const givenHost = isHostValue(request.host) ? request.host : request.raw.headers.host
    if (givenHost) {
      set['x-forwarded-host'] = givenHost
      if (route.upstream.kind === 'http' && route.upstream.preserveHost) set.host = givenHost
    }
    outcome.decision = 'allow'
    if (route.upstream.kind === 'http') outcome.forwarded = { upstream: route.upstream.id, at: performance.now() }
    if (upgrade !== undefined && route.websocket !== undefined && route.upstream.kind !== 'builtin') {
      // From here the socket is the tunnel's; a failure before the upstream answers is still answered (app.ts: fail).
      reply.hijack()
      const headers = rewriteRequestHeaders(request.headers, { policy: config.headers, forwardAuthorization, identity, set })
      if (protocols !== undefined) {
        if (protocols.rest === undefined) delete headers['sec-websocket-protocol']
        else headers['sec-websocket-protocol'] = protocols.rest
      }
      const session = { client: upgrade.socket, head: upgrade.head, policy: route.websocket, expiresAt: principal?.expiresAt, routeId: route.id, observer: tunnels, now: authn.now ?? Date.now }
      if (route.upstream.kind === 'echo') {
        const offered = headers['sec-websocket-protocol']
        reply.raw.statusCode = 101
        acceptEcho({
          ...session,
          key: request.headers['sec-websocket-key'] as string,
          protocol: typeof offered === 'string' ? offered.split(',')[0]!.trim() : undefined,
          greeting: JSON.stringify({ method, path: sentPath(route, target.path), query: target.query.replace(/^\?/, ''), headers: { host: request.host, ...headers } }),
        })
        return undefined
      }
      reply.raw.statusCode = await openTunnel({ ...session, target: route.upstream, path: sentPath(route, target.path) + target.query, headers })
      return undefined
    }
    return deliver(request, reply, route, target.path, target.query, { policy: config.headers, forwardAuthorization, identity, set }, { bounds, read, inspect }, forwarder, fail, certificate)
  }
}

/**
 * The check of a multipart form body as it streams: a field some framework
 * reads as access_token (where tokens are checked) or _method (where
 * overrides matter) stops the request. Multipart overrides are refused
 * even where overrides are allowed: their value is not known in time.
 */
function multipartCheck(contentType: string, checksToken: boolean, checksOverride: boolean): (chunk: Buffer) => void {
  const boundary = multipartBoundary(contentType)
  if (boundary === undefined) throw new GatewayError('request_malformed', 'a multipart body needs a boundary')
  const targets = [...(checksToken ? ['access_token'] : []), ...(checksOverride ? ['_method'] : [])]
  const scanner = new MultipartScanner(boundary, targets, (reading) => {
    if (reading === 'access_token') throw new GatewayError('token_duplicated', 'the request carries an access token in more than one place')
    throw new GatewayError('method_override_refused', 'method overrides in a multipart body are not accepted: send the request with its real method')
  })
  return (chunk) => scanner.push(chunk)
}

/** http or https: a trusted proxy's X-Forwarded-Proto when it says one of them, else the connection's own. */
function forwardedProto(request: FastifyRequest): string {
  const p = request.protocol
  if (p === 'https' || p === 'http') return p
  return (request.raw.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http'
}

/** The client chain: addresses vouched for by trusted proxies, then the peer. */
function forwardedFor(request: FastifyRequest): string {
  const ips = request.ips
  if (!ips || ips.length <= 1) return request.ip
  return [...ips].reverse().join(', ')
}
