import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors, UnsecuredJWT, type CompactJWSHeaderParameters, type JWTClaimVerificationOptions, type JWTPayload, type JWTVerifyGetKey, type ProtectedHeaderParameters } from 'jose'
import { keyObjectOf, verifySignature } from '../../oauth/jws-signature.js'
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
 * Verifies a JWT access token with one issuer's keys and rules: the
 * signature with node:crypto (oauth/jws-signature.ts: on the event loop, no
 * thread-pool hop), everything else by jose: header parsing, the algorithm
 * allow-list, key selection, crit and b64, iss, aud (any of), exp (required),
 * nbf and iat with the issuer's clock skew, and `typ` when the issuer
 * requires `at+jwt`.
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
    const jws = compactParts(token)
    const header = decodeProtectedHeader(token)
    const alg = header.alg
    if (typeof alg !== 'string' || !issuer.algorithms.includes(alg)) throw new errors.JOSEAlgNotAllowed('"alg" (Algorithm) Header Parameter value not allowed')
    const input = { payload: jws.payload, signature: jws.signature, protected: jws.protected }
    let verified = false
    try {
      verified = signedBy(await getKey(header as CompactJWSHeaderParameters, input, calls), alg, jws)
    } catch (err) {
      if (!(err instanceof errors.JWKSMultipleMatchingKeys)) throw err
      // Several keys share the token's kid (and fit its alg): try each, a bounded number.
      let tried = 0
      for await (const key of err) {
        if (++tried > MAX_KEY_CANDIDATES || (verified = signedBy(key, alg, jws))) break
      }
    }
    if (!verified) throw new errors.JWSSignatureVerificationFailed()
    return principalFromClaims(issuer.id, issuer.issuer, claimsChecked(header, jws.payload, options), issuer.scopeClaims)
  } catch (err) {
    throw toGatewayError(err)
  }
}

interface CompactJws {
  readonly protected: string
  readonly payload: string
  readonly signature: string
  /** What was signed: the header and payload segments as sent. */
  readonly signingInput: Buffer
}

function compactParts(token: string): CompactJws {
  const first = token.indexOf('.')
  const second = token.indexOf('.', first + 1)
  if (first < 0 || second < 0 || token.indexOf('.', second + 1) >= 0) throw new errors.JWSInvalid('Invalid Compact JWS')
  return {
    protected: token.slice(0, first),
    payload: token.slice(first + 1, second),
    signature: token.slice(second + 1),
    signingInput: Buffer.from(token.slice(0, second), 'latin1'),
  }
}

function signedBy(key: unknown, alg: string, jws: CompactJws): boolean {
  const keyObject = keyObjectOf(key)
  if (keyObject === undefined) throw new errors.JOSEError('the key set handed out a key node:crypto cannot use')
  return verifySignature(alg, keyObject, jws.signingInput, Buffer.from(jws.signature, 'base64url'))
}

/**
 * The payload, once jose has checked it and the header (crit, b64, typ) as
 * it checks a verified JWT's: through jose's own claims validation, reached
 * by its public API for a JWT whose signature is already checked (the same
 * header with alg "none", the same payload segment). jose then runs exactly
 * what jwtVerify runs after its signature check.
 */
function claimsChecked(header: ProtectedHeaderParameters, payload: string, options: JWTClaimVerificationOptions): JWTPayload {
  const unsecured = `${Buffer.from(JSON.stringify({ ...header, alg: 'none' })).toString('base64url')}.${payload}.`
  try {
    return UnsecuredJWT.decode(unsecured, options).payload
  } catch (err) {
    // Its own wording names "Unsecured JWT": a malformed header or payload is a malformed token.
    if (err instanceof errors.JWTInvalid && err.message === 'Invalid Unsecured JWT') throw new errors.JWTInvalid('Invalid JWT', { cause: err.cause })
    throw err
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
