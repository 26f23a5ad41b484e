import type { IntrospectionRecord } from './introspection.js'
import { principalFromIntrospection, type IntrospectingIssuer } from './introspection.js'
import { peekIssuer, verifyJwt, type TrustedIssuer } from './jwt.js'
import type { VerifiedTokenCache } from './verified-cache.js'
import type { Principal } from './principal.js'
import type { CacheSource, TieredCache } from '../../cache/tiered-cache.js'
import type { CallObserver } from '../../observe/calls.js'
import { GatewayError } from '../../errors.js'
import type { BearerToken } from '../extract/bearer.js'
import type { ValidationMode } from '../../config/schema.js'

/** An issuer as a route trusts it, with the validation mode in force on that route. */
export interface RouteIssuer {
  readonly issuer: TrustedIssuer & { readonly introspection: IntrospectingIssuer['introspection'] | undefined }
  readonly mode: ValidationMode
}

/** How a route authenticates tokens; compiled once per route. */
export interface TokenPolicy {
  /** Trusted issuers by their `iss`. */
  readonly byIss: ReadonlyMap<string, RouteIssuer>
  /** The one issuer whose endpoint introspects tokens that are not JWTs, if any. */
  readonly opaque: IntrospectingIssuer | undefined
  /** Claims the identity headers need besides the standard ones. */
  readonly keepClaims: readonly string[]
  /** Whether any trusted issuer's JWTs are verified locally here (else the verified-token cache is not consulted). */
  readonly verifiesJwts: boolean
}

/** The principal, and how it was established (for metrics). */
export interface Authenticated {
  readonly principal: Principal
  readonly method: 'jwt' | 'introspection'
  /** Where an introspection result came from; `none` for local JWT verification. */
  readonly cache: CacheSource | 'none'
}

export interface AuthnContext {
  readonly introspectionCache: TieredCache<IntrospectionRecord>
  /** JWTs already verified; without it every JWT is verified again. */
  readonly verifiedTokens?: VerifiedTokenCache | undefined
  readonly now?: () => number
}

/**
 * The authentication stage. A JWT's (unverified) `iss` picks the trusted
 * issuer, whose mode on this route says how to check it:
 * - `jwt`, `auto`: verified locally;
 * - `introspection`: asked to the issuer's endpoint;
 * - `jwt_and_introspection`: verified locally, then asked (revocation).
 * A token that is not a JWT goes to the route's opaque-token issuer, if any.
 */
export async function authenticate(bearer: BearerToken, policy: TokenPolicy, ctx: AuthnContext, calls?: CallObserver): Promise<Authenticated> {
  const token = bearer.value
  // A JWT verified before is found by its hash, without decoding it again.
  const key = ctx.verifiedTokens && policy.verifiesJwts ? bearer.keyFor(ctx.verifiedTokens) : undefined
  const hit = key === undefined ? undefined : ctx.verifiedTokens!.get(key)
  if (hit) {
    const entry = policy.byIss.get(hit.verifiedBy.issuer)
    if (entry && entry.issuer === hit.verifiedBy && (entry.mode === 'jwt' || entry.mode === 'auto')) {
      return { principal: hit, method: 'jwt', cache: 'memory' }
    }
  }
  const iss = peekIssuer(token)
  if (iss === undefined) throw new GatewayError('issuer_untrusted', 'the token names no issuer')
  if (iss !== null) {
    const entry = policy.byIss.get(iss)
    if (!entry) throw new GatewayError('issuer_untrusted', 'the token was issued by an issuer this route does not trust')
    switch (entry.mode) {
      case 'jwt':
      case 'auto':
        return verifyJwtCached(token, key, hit, entry.issuer, policy, ctx, calls)
      case 'introspection':
        return introspect(bearer, entry.issuer as IntrospectingIssuer, ctx, calls)
      case 'jwt_and_introspection': {
        const { principal } = await verifyJwtCached(token, key, hit, entry.issuer, policy, ctx, calls)
        const checked = await introspect(bearer, entry.issuer as IntrospectingIssuer, ctx, calls)
        return { principal, method: 'introspection', cache: checked.cache }
      }
    }
  }
  if (policy.opaque) return introspect(bearer, policy.opaque, ctx, calls)
  throw new GatewayError('token_malformed', 'the token is not a JWT')
}

/** `hit`: what the verified-token cache held for the token's key (looked up once, in authenticate). */
async function verifyJwtCached(
  token: string,
  key: string | undefined,
  hit: ReturnType<VerifiedTokenCache['get']>,
  issuer: TrustedIssuer,
  policy: TokenPolicy,
  ctx: AuthnContext,
  calls: CallObserver | undefined,
): Promise<Authenticated> {
  const cache = ctx.verifiedTokens
  if (!cache || key === undefined) return { principal: await verifyJwt(token, issuer, calls), method: 'jwt', cache: 'none' }
  if (hit && hit.verifiedBy === issuer) return { principal: hit, method: 'jwt', cache: 'memory' }
  const principal = await verifyJwt(token, issuer, calls)
  cache.set(key, issuer, principal, policy.keepClaims)
  return { principal, method: 'jwt', cache: 'origin' }
}

async function introspect(bearer: BearerToken, issuer: IntrospectingIssuer, ctx: AuthnContext, calls: CallObserver | undefined): Promise<Authenticated> {
  const client = issuer.introspection
  const token = bearer.value
  const now = ctx.now ?? Date.now
  const { value, source } = await ctx.introspectionCache.get(
    bearer.keyFor(client),
    async () => {
      const record = await client.introspect(token, calls)
      return { value: record, ttlMs: client.ttlMs(record, now()) }
    },
    // Computed only when the shared tier is read or written.
    () => client.sealSecret(token),
    calls,
  )
  return { principal: principalFromIntrospection(issuer, value, now() / 1000, source === 'memory'), method: 'introspection', cache: source }
}
