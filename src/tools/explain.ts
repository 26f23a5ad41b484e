import type { CompiledConfig } from '../config/compile.js'
import { GatewayError } from '../errors.js'
import { ExpiringLru } from '../cache/lru.js'
import { TieredCache } from '../cache/tiered-cache.js'
import { authenticate } from '../pipeline/authn/authenticate.js'
import { introspectionCodec, type IntrospectionRecord } from '../pipeline/authn/introspection.js'
import type { Principal } from '../pipeline/authn/principal.js'
import { authorize } from '../pipeline/authz/scopes.js'
import { canonicalHost } from '../pipeline/normalize/host.js'
import { canonicalTarget } from '../pipeline/normalize/path.js'
import { BearerToken } from '../pipeline/extract/bearer.js'
import { upstreamPath } from '../pipeline/forward/upstream.js'
import { HTTP_BY_CODE } from '../http/error-reply.js'
import { describeAuth } from './routes.js'

export interface ExplainInput {
  readonly method: string
  readonly path: string
  readonly host?: string | undefined
  /** A real token: authenticated as the gateway would (this may fetch keys or introspect). */
  readonly token?: string | undefined
  /** Or the scopes a token would carry. */
  readonly scopes?: readonly string[] | undefined
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
    lines.push(`request: ${input.method} ${target.path}${target.query}${input.host ? ` (host ${input.host})` : ''}`)
    const match = config.router.match(input.method.toUpperCase(), canonicalHost(input.host), target.path)
    if (!match) throw new GatewayError('route_not_found', 'no route matches this request')
    const route = match.route
    lines.push(`route: ${route.id} (${route.methods?.join(',') ?? 'any method'} ${route.pattern.source}${route.host ? ` on ${route.host}` : ''})`)
    if (Object.keys(match.params).length) lines.push(`params: ${JSON.stringify(match.params)}`)
    lines.push(`requires: ${describeAuth(route)}`)
    const upstream = route.upstream.kind === 'http' ? route.upstream.base + upstreamPath(route, target.path) + target.query : `(${route.upstream.kind})`
    if (route.auth.kind === 'protected') {
      let principal: Principal
      if (input.token !== undefined) {
        const cache = new TieredCache<IntrospectionRecord>({ memory: new ExpiringLru(10), codec: introspectionCodec })
        principal = (await authenticate(new BearerToken(input.token), route.auth.tokens, { introspectionCache: cache })).principal
        lines.push(`token: issuer ${principal.issuerId}, client ${principal.clientId ?? '-'}, subject ${principal.subject ?? '-'}, scopes ${[...principal.scopes].join(' ') || '-'}`)
      } else if (input.scopes !== undefined) {
        principal = { issuerId: '-', issuer: '-', subject: undefined, clientId: undefined, scopes: new Set(input.scopes), expiresAt: undefined, claims: {} }
        lines.push(`token: assumed valid, with scopes ${input.scopes.join(' ') || '-'}`)
      } else {
        throw new GatewayError('token_missing', 'no --token or --scopes given')
      }
      try {
        authorize(principal, route.auth.scopes, input.method.toUpperCase())
      } catch (err) {
        if (err instanceof GatewayError && err.requiredScopes) lines.push(`missing: ${err.requiredScopes.filter((s) => !principal.scopes.has(s)).join(' ')}`)
        throw err
      }
    }
    lines.push(`decision: allow → forwarded to ${upstream}`)
    return { decision: 'allow', status: undefined, reason: 'ok', lines }
  } catch (err) {
    if (err instanceof GatewayError) return deny(err)
    throw err
  }
}
