import { createLocalJWKSet, decodeJwt, errors, jwtVerify, type JWTVerifyGetKey } from 'jose'
import type { CallObserver } from '../../observe/calls.js'

/** A key lookup that may fetch (a remote set): its fetch is one of the request's calls. */
export type GetKey = (header: Parameters<JWTVerifyGetKey>[0], token: Parameters<JWTVerifyGetKey>[1], calls?: CallObserver) => ReturnType<JWTVerifyGetKey>
import { GatewayError, isGatewayError } from '../../errors.js'
import { principalFromClaims, type Principal } from './principal.js'
import type { ClaimPath } from './claim-path.js'

/** An issuer as the request path uses it: immutable, built once per config. */
export interface TrustedIssuer {
  readonly id: string
  readonly issuer: string
  readonly audiences: readonly string[]
  readonly algorithms: readonly string[]
  readonly clockSkewSeconds: number
  readonly requireTyp: 'at+jwt' | undefined
  /** Undefined when the issuer's tokens are only introspected. */
  readonly getKey: GetKey | undefined
  /** Changes whenever the issuer's key set changes (static keys: never). */
  readonly keyVersion?: () => number
  /** Where its tokens carry scopes (default: scope and scp). */
  readonly scopeClaims?: readonly ClaimPath[]
}

const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

/** True when the token has the shape of a signed JWT (three base64url parts). */
export function looksLikeJwt(token: string): boolean {
  return JWS_COMPACT.test(token)
}

/**
 * The unverified `iss` of a JWT-shaped token: it only selects which trusted
 * issuer's keys and rules apply. `null` when the token is not a decodable JWT
 * (an opaque token), `undefined` when it is a JWT without a string `iss`.
 */
export function peekIssuer(token: string): string | undefined | null {
  if (!looksLikeJwt(token)) return null
  try {
    const iss = decodeJwt(token).iss
    return typeof iss === 'string' ? iss : undefined
  } catch {
    return null
  }
}

/**
 * Verifies a JWT access token with one issuer's keys and rules, all checked
 * by jose: signature, algorithm allow-list, iss, aud (any of), exp (required),
 * nbf and iat with the issuer's clock skew, and `typ` when the issuer requires
 * `at+jwt`.
 */
export async function verifyJwt(token: string, issuer: TrustedIssuer, calls?: CallObserver): Promise<Principal> {
  const getKey = issuer.getKey
  if (!getKey) throw new GatewayError('token_malformed', 'this route does not accept JWTs from this issuer')
  const options = {
    issuer: issuer.issuer,
    audience: issuer.audiences as string[],
    algorithms: issuer.algorithms as string[],
    clockTolerance: issuer.clockSkewSeconds,
    requiredClaims: ['exp'],
    ...(issuer.requireTyp ? { typ: issuer.requireTyp } : {}),
  }
  try {
    const lookup: JWTVerifyGetKey = calls === undefined ? getKey : (h, t) => getKey(h, t, calls)
    const { payload } = await jwtVerify(token, lookup, options)
    return principalFromClaims(issuer.id, issuer.issuer, payload, issuer.scopeClaims)
  } catch (err) {
    if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw toGatewayError(err)
    // Several keys share the token's kid (and fit its alg): try each, a bounded number.
    let last: unknown = err
    let tried = 0
    for await (const key of err) {
      if (++tried > MAX_KEY_CANDIDATES) break
      try {
        const { payload } = await jwtVerify(token, key, options)
        return principalFromClaims(issuer.id, issuer.issuer, payload, issuer.scopeClaims)
      } catch (e) {
        last = e
        // Only a wrong signature says "try the next key"; any other failure is the token's.
        if (!(e instanceof errors.JWSSignatureVerificationFailed)) break
      }
    }
    throw toGatewayError(last instanceof errors.JWKSMultipleMatchingKeys ? new errors.JWSSignatureVerificationFailed() : last)
  }
}

/** Keys tried for one token when several share its kid. */
export const MAX_KEY_CANDIDATES = 4

function toGatewayError(err: unknown): GatewayError {
  if (isGatewayError(err)) return err
  if (err instanceof errors.JWTExpired) return new GatewayError('token_expired', 'the token has expired', { cause: err })
  if (err instanceof errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'nbf':
        return new GatewayError('token_not_yet_valid', 'the token is not valid yet', { cause: err })
      case 'aud':
        return new GatewayError('audience_invalid', 'the token is not meant for this audience', { cause: err })
      case 'iss':
        return new GatewayError('issuer_untrusted', 'the token was issued by an issuer this route does not trust', { cause: err })
      case 'typ':
        return new GatewayError('type_invalid', 'the token is not an access token (typ must be at+jwt)', { cause: err })
      default:
        return new GatewayError('claims_invalid', `the token's "${err.claim}" claim is missing or invalid`, { cause: err })
    }
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return new GatewayError('algorithm_not_allowed', 'the token is signed with an algorithm this issuer may not use', { cause: err })
  if (err instanceof errors.JWSSignatureVerificationFailed) return new GatewayError('signature_invalid', 'the token signature is invalid', { cause: err })
  if (err instanceof errors.JWKSNoMatchingKey) return new GatewayError('key_unknown', 'the token is signed with a key this issuer does not publish', { cause: err })
  if (err instanceof errors.JOSEError) return new GatewayError('token_malformed', 'the token is not a valid JWT', { cause: err })
  return new GatewayError('internal_error', 'the token could not be verified', { cause: err })
}

/** Key lookup over static keys first, then (if any) a remote set. */
export function combineKeySources(staticKeys: Parameters<typeof createLocalJWKSet>[0] | undefined, remote: GetKey | undefined): GetKey {
  const local = staticKeys && staticKeys.keys.length > 0 ? createLocalJWKSet(staticKeys) : undefined
  if (local && !remote) return local
  if (remote && !local) return remote
  if (!local || !remote) throw new Error('an issuer needs jwks_uri or keys')
  return async (header, token, calls) => {
    try {
      return await local(header, token)
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey) return remote(header, token, calls)
      throw err
    }
  }
}
