import { GatewayError, type ErrorCode } from '../errors.js'

type OAuthError = 'invalid_request' | 'invalid_token' | 'insufficient_scope' | 'insufficient_user_authentication' | 'invalid_dpop_proof' | 'use_dpop_nonce'

interface Mapping {
  readonly status: number
  /** The RFC 6750 error code; absent for errors that are not about the token. */
  readonly oauth?: OAuthError
  /** The `error` of the JSON body when there is no OAuth error code. */
  readonly error?: string
}

/** The one place where an error code becomes an HTTP answer. */
export const HTTP_BY_CODE: Readonly<Record<ErrorCode, Mapping>> = {
  path_invalid: { status: 400, error: 'invalid_path' },
  host_invalid: { status: 400, error: 'invalid_request' },
  upgrade_unsupported: { status: 501, error: 'not_implemented' },
  request_malformed: { status: 400, error: 'invalid_request' },
  authorization_malformed: { status: 400, oauth: 'invalid_request' },
  token_duplicated: { status: 400, oauth: 'invalid_request' },
  token_location_unsupported: { status: 400, oauth: 'invalid_request' },
  body_too_large: { status: 413, error: 'payload_too_large' },
  method_override_refused: { status: 400, error: 'invalid_request' },
  body_encoding_unsupported: { status: 415, error: 'unsupported_media_type' },
  body_timeout: { status: 408, error: 'request_timeout' },
  client_closed: { status: 400, error: 'invalid_request' },
  method_not_allowed: { status: 405, error: 'method_not_allowed' },
  client_certificate_invalid: { status: 400, error: 'invalid_client_certificate' },
  token_missing: { status: 401, error: 'unauthorized' },
  token_malformed: { status: 401, oauth: 'invalid_token' },
  token_expired: { status: 401, oauth: 'invalid_token' },
  token_not_yet_valid: { status: 401, oauth: 'invalid_token' },
  token_inactive: { status: 401, oauth: 'invalid_token' },
  token_revoked: { status: 401, oauth: 'invalid_token' },
  signature_invalid: { status: 401, oauth: 'invalid_token' },
  algorithm_not_allowed: { status: 401, oauth: 'invalid_token' },
  issuer_untrusted: { status: 401, oauth: 'invalid_token' },
  audience_invalid: { status: 401, oauth: 'invalid_token' },
  type_invalid: { status: 401, oauth: 'invalid_token' },
  key_unknown: { status: 401, oauth: 'invalid_token' },
  key_unusable: { status: 401, oauth: 'invalid_token' },
  claims_invalid: { status: 401, oauth: 'invalid_token' },
  authentication_insufficient: { status: 401, oauth: 'insufficient_user_authentication' },
  dpop_proof_invalid: { status: 401, oauth: 'invalid_dpop_proof' },
  dpop_proof_replayed: { status: 401, oauth: 'invalid_dpop_proof' },
  dpop_nonce_required: { status: 401, oauth: 'use_dpop_nonce' },
  token_binding_missing: { status: 401, oauth: 'invalid_token' },
  token_binding_mismatch: { status: 401, oauth: 'invalid_token' },
  token_binding_required: { status: 401, oauth: 'invalid_token' },
  token_binding_unsupported: { status: 401, oauth: 'invalid_token' },
  scope_insufficient: { status: 403, oauth: 'insufficient_scope' },
  claim_rule_failed: { status: 403, error: 'access_denied' },
  cors_refused: { status: 403, error: 'cors_refused' },
  route_not_found: { status: 404, error: 'not_found' },
  rate_limited: { status: 429, error: 'too_many_requests' },
  dependency_unavailable: { status: 503, error: 'temporarily_unavailable' },
  rate_limit_unavailable: { status: 503, error: 'temporarily_unavailable' },
  upstream_unavailable: { status: 502, error: 'bad_gateway' },
  upstream_failed: { status: 502, error: 'bad_gateway' },
  upstream_tls_failed: { status: 502, error: 'bad_gateway' },
  upstream_timeout: { status: 504, error: 'gateway_timeout' },
  upstream_saturated: { status: 503, error: 'temporarily_unavailable' },
  internal_error: { status: 500, error: 'server_error' },
}

/** What 5xx answers say; the real cause goes to the log only. */
const PUBLIC_5XX: Readonly<Record<number, string>> = {
  500: 'the gateway failed to handle the request',
  501: 'this protocol upgrade is not supported here (WebSocket only, on routes that allow it)',
  502: 'the upstream service could not be reached',
  503: 'a service needed for this request is unavailable or busy; retry later',
  504: 'the upstream service did not answer in time',
}

export interface ErrorReply {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: { error: string; error_description: string; request_id?: string }
}

export interface ChallengeContext {
  readonly realm: string
  /** RFC 9728 protected resource metadata URL, when the gateway publishes one. */
  readonly resourceMetadata?: string | undefined
  /**
   * The DPoP proof algorithms accepted (RFC 9449 §7.1 `algs`): the challenge
   * uses the DPoP scheme when the request used it or the route needs DPoP
   * (`dpop`), and for every error about a proof.
   */
  readonly dpop?: { readonly algs: string; readonly challenge: boolean } | undefined
}

const DPOP_ERRORS: ReadonlySet<ErrorCode> = new Set(['dpop_proof_invalid', 'dpop_proof_replayed', 'dpop_nonce_required'])

function quote(value: string): string {
  return '"' + value.replace(/["\\]/g, '') + '"'
}

/**
 * Builds the answer to a failed request: status, RFC 6750 §3 challenge
 * (`WWW-Authenticate: Bearer …`, with no `error` when no token was sent) and
 * a JSON body with `error` and `error_description`.
 */
export function errorReply(err: GatewayError, challenge: ChallengeContext, requestId?: string): ErrorReply {
  const mapping = HTTP_BY_CODE[err.code]
  const status = mapping.status
  const description = status >= 500 ? PUBLIC_5XX[status]! : err.message
  const headers: Record<string, string> = { 'cache-control': 'no-store' }
  if (err.retryAfter !== undefined) headers['retry-after'] = String(err.retryAfter)
  if (err.dpopNonce !== undefined) headers['dpop-nonce'] = err.dpopNonce
  if (status === 401 || (status === 403 && err.code !== 'cors_refused') || (status === 400 && mapping.oauth)) {
    const params = [`realm=${quote(challenge.realm)}`]
    if (mapping.oauth) {
      params.push(`error=${quote(mapping.oauth)}`, `error_description=${quote(description)}`)
    }
    if (mapping.oauth === 'insufficient_scope' && err.requiredScopes && err.requiredScopes.length > 0) {
      params.push(`scope=${quote(err.requiredScopes.join(' '))}`)
    }
    if (mapping.oauth === 'insufficient_user_authentication' && err.stepUp) {
      if (err.stepUp.acrValues.length > 0) params.push(`acr_values=${quote(err.stepUp.acrValues.join(' '))}`)
      if (err.stepUp.maxAge !== undefined) params.push(`max_age=${err.stepUp.maxAge}`)
    }
    if (challenge.resourceMetadata) params.push(`resource_metadata=${quote(challenge.resourceMetadata)}`)
    const dpop = challenge.dpop !== undefined && (challenge.dpop.challenge || DPOP_ERRORS.has(err.code))
    if (dpop) params.push(`algs=${quote(challenge.dpop!.algs)}`)
    headers['www-authenticate'] = (dpop ? 'DPoP ' : 'Bearer ') + params.join(', ')
  }
  const body: ErrorReply['body'] = {
    error: mapping.oauth ?? mapping.error ?? 'error',
    error_description: description,
  }
  if (requestId) body.request_id = requestId
  return { status, headers, body }
}

/** Errors that did not come from the pipeline (body parsing, sockets…) as GatewayErrors. */
export function asGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err
  const e = err as { code?: string; statusCode?: number }
  if (e?.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new GatewayError('body_too_large', 'the request body is too large', { cause: err })
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new GatewayError('request_malformed', 'the request is malformed', { cause: err })
  }
  return new GatewayError('internal_error', 'internal error', { cause: err })
}

/** gRPC status codes by HTTP status (grpc/doc/http-grpc-status-mapping, and the gateway's own meanings). */
const GRPC_BY_STATUS: Readonly<Record<number, number>> = {
  400: 3, // INVALID_ARGUMENT
  401: 16, // UNAUTHENTICATED
  403: 7, // PERMISSION_DENIED
  404: 12, // UNIMPLEMENTED: no such method here
  405: 12,
  408: 4, // DEADLINE_EXCEEDED
  413: 8, // RESOURCE_EXHAUSTED
  415: 3,
  429: 8,
  431: 8,
  500: 13, // INTERNAL
  501: 12,
  502: 14, // UNAVAILABLE
  503: 14,
  504: 4,
}

/** Whether a request is a gRPC call (its content type says so). */
export function isGrpc(contentType: string | undefined): boolean {
  return contentType !== undefined && /^application\/grpc(?:[+;]|$)/i.test(contentType)
}

/**
 * The same refusal as a gRPC client reads it: HTTP 200, no message, and
 * grpc-status and grpc-message (percent-encoded) in the trailers;
 * WWW-Authenticate, Retry-After and DPoP-Nonce kept in the headers.
 */
export function grpcReply(answer: ErrorReply): ErrorReply & { readonly trailers: Readonly<Record<string, string>> } {
  return {
    status: 200,
    headers: { ...answer.headers, 'content-type': 'application/grpc' },
    body: answer.body,
    // gRPC clients show trailers as the error's metadata: the challenge goes there too.
    trailers: {
      ...(answer.headers['www-authenticate'] !== undefined ? { 'www-authenticate': answer.headers['www-authenticate'] } : {}),
      'grpc-status': String(GRPC_BY_STATUS[answer.status] ?? 2),
      'grpc-message': encodeURIComponent(answer.body.error_description).replace(/%20/g, ' '),
    },
  }
}
