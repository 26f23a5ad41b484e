/**
 * Every failure on the request path is a GatewayError with a stable `code`.
 * The code is also the `reason` label of the auth metrics, so the set is fixed
 * and small. How a code becomes an HTTP answer is decided in exactly one place:
 * src/http/error-reply.ts.
 */
export type ErrorCode =
  // the request itself is unusable (400)
  | 'path_invalid'
  | 'host_invalid'
  | 'upgrade_unsupported'
  | 'request_malformed'
  | 'authorization_malformed'
  | 'token_duplicated'
  | 'token_location_unsupported'
  | 'body_too_large'
  | 'method_override_refused'
  | 'body_encoding_unsupported'
  | 'body_timeout'
  | 'client_closed'
  | 'method_not_allowed'
  | 'client_certificate_invalid'
  // the credentials do not authenticate (401)
  | 'token_missing'
  | 'token_malformed'
  | 'token_expired'
  | 'token_not_yet_valid'
  | 'token_inactive'
  | 'token_revoked'
  | 'signature_invalid'
  | 'algorithm_not_allowed'
  | 'issuer_untrusted'
  | 'audience_invalid'
  | 'type_invalid'
  | 'key_unknown'
  | 'key_unusable'
  | 'claims_invalid'
  | 'authentication_insufficient'
  // sender-constrained tokens (RFC 9449 DPoP, RFC 8705 certificate-bound): 401
  | 'dpop_proof_invalid'
  | 'dpop_proof_replayed'
  | 'dpop_nonce_required'
  | 'token_binding_missing'
  | 'token_binding_mismatch'
  | 'token_binding_required'
  | 'token_binding_unsupported'
  // authenticated but not allowed (403)
  | 'scope_insufficient'
  | 'claim_rule_failed'
  | 'cors_refused'
  // nothing to send it to (404)
  | 'route_not_found'
  // too many requests for a rate limit (429)
  | 'rate_limited'
  // something we depend on failed: never a reason to allow (5xx)
  | 'dependency_unavailable'
  | 'rate_limit_unavailable'
  | 'upstream_unavailable'
  | 'upstream_timeout'
  | 'upstream_saturated'
  | 'upstream_failed'
  | 'upstream_tls_failed'
  | 'internal_error'

export interface GatewayErrorOptions {
  cause?: unknown
  /** Scopes the route requires, for the `insufficient_scope` challenge. */
  requiredScopes?: readonly string[]
  /** Seconds after which a retry may succeed (Retry-After). */
  retryAfter?: number
  /** Why TLS to the upstream failed (metrics and logs). */
  tlsFailure?: string
  /** The id of the claim rule that failed (logs and metrics only, never the answer). */
  rule?: string
  /** The id of the rate limit that refused the request (logs only; the answer's RateLimit headers name it too). */
  limit?: string
  /** What a new token must show, for the RFC 9470 challenge. */
  stepUp?: { readonly acrValues: readonly string[]; readonly maxAge: number | undefined }
  /** A fresh DPoP nonce for the client to use (RFC 9449 §8: the DPoP-Nonce header). */
  dpopNonce?: string
}

export class GatewayError extends Error {
  readonly code: ErrorCode
  readonly requiredScopes: readonly string[] | undefined
  readonly retryAfter: number | undefined
  readonly rule: string | undefined
  readonly limit: string | undefined
  readonly tlsFailure: string | undefined
  readonly stepUp: GatewayErrorOptions['stepUp']
  readonly dpopNonce: string | undefined

  /**
   * @param detail a client-safe description. It must never contain a token,
   *   a secret or any other value taken from the request.
   */
  constructor(code: ErrorCode, detail: string, options: GatewayErrorOptions = {}) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'GatewayError'
    this.code = code
    this.requiredScopes = options.requiredScopes
    this.retryAfter = options.retryAfter
    this.rule = options.rule
    this.limit = options.limit
    this.tlsFailure = options.tlsFailure
    this.stepUp = options.stepUp
    this.dpopNonce = options.dpopNonce
  }
}

export function isGatewayError(err: unknown): err is GatewayError {
  return err instanceof GatewayError
}
