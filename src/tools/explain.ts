import type { CompiledConfig } from '../config/compile.js'
import { GatewayError } from '../errors.js'
import { TieredCache } from '../cache/tiered-cache.js'
import { authenticate } from '../pipeline/authn/authenticate.js'
import { IntrospectionMemory, introspectionCodec, type IntrospectionRecord } from '../pipeline/authn/introspection.js'
import type { Principal } from '../pipeline/authn/principal.js'
import { confirmationOf } from '../pipeline/authn/confirmation.js'
import { checkBinding, type BindingMode } from '../pipeline/binding/binding.js'

const BINDING_WORDS: Readonly<Record<BindingMode, string>> = {
  optional: 'unbound tokens as Bearer, bound ones with their binding (optional)',
  dpop: 'DPoP-bound tokens only (dpop)',
  mtls: 'certificate-bound tokens only (mtls)',
  any: 'bound tokens only, DPoP or certificate (any)',
}
import { authorize } from '../pipeline/authz/scopes.js'
import { canonicalHost } from '../pipeline/normalize/host.js'
import { canonicalTarget } from '../pipeline/normalize/path.js'
import { BearerToken } from '../pipeline/extract/bearer.js'
import { upstreamPath } from '../pipeline/forward/upstream.js'
import { HTTP_BY_CODE } from '../http/error-reply.js'
import { checkClaimRules } from '../pipeline/policy/claim-rules.js'
import { checkStepUp } from '../pipeline/policy/step-up.js'
import { corsHeaders, isPreflight, preflight, type CorsPolicy } from '../pipeline/cors/cors.js'
import { describeAuth, describeRateLimits } from './routes.js'

export interface ExplainInput {
  readonly method: string
  readonly path: string
  readonly host?: string | undefined
  /** A real token: authenticated as the gateway would (this may fetch keys or introspect). */
  readonly token?: string | undefined
  /** Or the scopes a token would carry… */
  readonly scopes?: readonly string[] | undefined
  /** …and its other claims (for claim rules and step-up). */
  readonly claims?: Readonly<Record<string, unknown>> | undefined
  /** The page origin a browser would send (CORS). */
  readonly origin?: string | undefined
  /** With method OPTIONS and an origin: the method a preflight announces. */
  readonly requestMethod?: string | undefined
  /** How the token is presented: as Bearer (default), with a DPoP proof of the key it is bound to, or over its certificate. */
  readonly binding?: 'bearer' | 'dpop' | 'mtls' | undefined
  /** The clock, for step-up (tests). */
  readonly now?: () => number
}

export interface Explanation {
  readonly decision: 'allow' | 'deny'
  readonly status: number | undefined
  readonly reason: string
  readonly lines: readonly string[]
}

/**
 * Runs a request through the same stages the gateway runs (normalise, match,
 * authenticate, authorize) and says what happens and why. Nothing is forwarded.
 */
export async function explain(config: CompiledConfig, input: ExplainInput): Promise<Explanation> {
  const lines: string[] = []
  const deny = (err: GatewayError): Explanation => {
    lines.push(`decision: deny (${err.code}: ${err.message}) → ${HTTP_BY_CODE[err.code].status}`)
    return { decision: 'deny', status: HTTP_BY_CODE[err.code].status, reason: err.code, lines }
  }
  try {
    const target = canonicalTarget(input.path, config.server.caseInsensitivePaths)
    const method = input.method.toUpperCase()
    lines.push(`request: ${method} ${target.path}${target.query}${input.host ? ` (host ${input.host})` : ''}${input.origin ? ` from origin ${input.origin}` : ''}`)
    const host = canonicalHost(input.host)
    if (input.origin !== undefined && input.requestMethod !== undefined && isPreflight(method, { origin: input.origin, 'access-control-request-method': input.requestMethod })) {
      const announced = config.router.match(input.requestMethod.toUpperCase(), host, target.path)
      if (announced?.route.cors) {
        lines.push(`preflight for ${input.requestMethod.toUpperCase()}: route ${announced.route.id}, answered by the gateway (no token, never forwarded)`)
        const headers = preflight(announced.route.cors, input.origin, input.requestMethod.toUpperCase(), undefined)
        lines.push(`decision: allow → 204 ${describeHeaders(headers)}`)
        return { decision: 'allow', status: 204, reason: 'cors_preflight', lines }
      }
      lines.push(`preflight for ${input.requestMethod.toUpperCase()}: ${announced ? `route ${announced.route.id} has no CORS policy` : 'no route serves that method'}; handled as a plain OPTIONS request`)
    }
    const match = config.router.match(method, host, target.path)
    if (!match) throw new GatewayError('route_not_found', 'no route matches this request')
    const route = match.route
    lines.push(`route: ${route.id} (${route.methods?.join(',') ?? 'any method'} ${route.pattern.source}${route.host ? ` on ${route.host}` : ''})`)
    if (Object.keys(match.params).length) lines.push(`params: ${JSON.stringify(match.params)}`)
    lines.push(`requires: ${describeAuth(route)}`)
    if (route.rateLimits !== undefined) lines.push(`rate limits: ${describeRateLimits(route, config.cache.redis !== undefined)} (not counted here)`)
    if (input.origin !== undefined) lines.push(`cors: ${describeCors(route.cors, input.origin)}`)
    const upstream = route.upstream.kind === 'http' ? route.upstream.base + upstreamPath(route, target.path) + target.query : `(${route.upstream.kind})`
    if (route.auth.kind === 'protected') {
      let principal: Principal
      if (input.token !== undefined) {
        const cache = new TieredCache<IntrospectionRecord>({ memory: new IntrospectionMemory(10), codec: introspectionCodec })
        principal = (await authenticate(new BearerToken(input.token), route.auth.tokens, { introspectionCache: cache })).principal
        lines.push(`token: issuer ${principal.issuerId}, client ${principal.clientId ?? '-'}, subject ${principal.subject ?? '-'}, scopes ${[...principal.scopes].join(' ') || '-'}`)
      } else if (input.scopes !== undefined || input.claims !== undefined) {
        const claims = input.claims ?? {}
        const text = (v: unknown) => (typeof v === 'string' ? v : undefined)
        principal = { issuerId: '-', issuer: '-', subject: text(claims.sub), clientId: text(claims.client_id) ?? text(claims.azp), scopes: new Set(input.scopes ?? []), expiresAt: undefined, claims, confirmation: confirmationOf(claims.cnf) }
        lines.push(`token: assumed valid, with scopes ${input.scopes?.join(' ') || '-'}${input.claims ? ` and claims ${JSON.stringify(claims)}` : ''}`)
      } else {
        throw new GatewayError('token_missing', 'no --token, --scopes or --claims given')
      }
      const mode = route.auth.binding.get(principal.issuerId) ?? route.auth.bindingMode ?? [...route.auth.binding.values()][0] ?? 'optional'
      const cnf = principal.confirmation
      const presented = input.binding ?? 'bearer'
      // Said when it matters: a route that needs binding, a bound token, or a presentation other than Bearer.
      if (mode !== 'optional' || cnf !== undefined || presented !== 'bearer') lines.push(
        `binding: the route takes ${BINDING_WORDS[mode]}; the token is ${cnf === undefined ? 'unbound' : `bound to ${[cnf.jkt !== undefined ? `DPoP key ${cnf.jkt}` : '', cnf.x5t !== undefined ? `certificate ${cnf.x5t}` : ''].filter(Boolean).join(' and ')}`}; presented ${presented === 'bearer' ? 'as Bearer' : presented === 'dpop' ? 'with a DPoP proof of its key' : 'over its certificate'}`,
      )
      checkBinding(principal, mode, {
        proof: presented === 'dpop' ? { jkt: cnf?.jkt ?? '-', jti: '-', iat: 0, nonce: undefined } : undefined,
        certificate: () => (presented === 'mtls' ? { x5t: cnf?.x5t ?? '-', names: [] } : undefined),
      })
      if (route.auth.stepUp) {
        try {
          checkStepUp(principal, route.auth.stepUp, (input.now ?? Date.now)() / 1000, config.issuers.get(principal.issuerId)?.clockSkewSeconds ?? 0)
        } catch (err) {
          if (err instanceof GatewayError && err.stepUp) lines.push(`step-up: the token must show ${describeStepUp(err.stepUp)}`)
          throw err
        }
        lines.push('step-up: satisfied')
      }
      try {
        authorize(principal, route.auth.scopes, method)
      } catch (err) {
        if (err instanceof GatewayError && err.requiredScopes) lines.push(`missing: ${err.requiredScopes.filter((s) => !principal.scopes.has(s)).join(' ')}`)
        throw err
      }
      if (route.auth.claimRules.length > 0) {
        try {
          checkClaimRules(principal, route.auth.claimRules, match.params, config.server.caseInsensitivePaths)
        } catch (err) {
          if (err instanceof GatewayError && err.rule) lines.push(`claim rule failed: ${err.rule}`)
          throw err
        }
        lines.push(`claim rules: ${route.auth.claimRules.map((r) => r.id).join(', ')} hold`)
      }
    }
    lines.push(`decision: allow → forwarded to ${upstream}`)
    return { decision: 'allow', status: undefined, reason: 'ok', lines }
  } catch (err) {
    if (err instanceof GatewayError) return deny(err)
    throw err
  }
}

function describeHeaders(headers: Readonly<Record<string, string>>): string {
  return Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}`)
    .join('; ')
}

function describeStepUp(s: { readonly acrValues: readonly string[]; readonly maxAge: number | undefined }): string {
  return [s.acrValues.length ? `acr one of ${s.acrValues.join(' ')}` : '', s.maxAge !== undefined ? `auth_time within ${s.maxAge} s` : ''].filter(Boolean).join(' and ')
}

function describeCors(policy: CorsPolicy | undefined, origin: string): string {
  if (policy === undefined) return 'none on this route (its answers carry no CORS headers; the upstream may add its own)'
  const headers = corsHeaders(policy, origin)
  if (headers['access-control-allow-origin'] === undefined) return `origin ${origin} is not allowed: preflights are refused (403) and answers carry no CORS headers, so browsers block them`
  return `origin allowed: answers carry ${describeHeaders(headers)}`
}
