import { GatewayError } from '../../errors.js'
import type { Principal } from '../authn/principal.js'
import type { ClientCertificate } from '../../oauth/client-certificate.js'
import { verifyProof, type ProofSettings, type VerifiedProof } from '../../oauth/dpop-proof.js'
import type { NonceIssuer } from './nonce.js'
import { dpopProofHeader } from '../extract/bearer.js'

/**
 * Which tokens a route (or an issuer) accepts, by what they are bound to:
 * - `optional` (the default): unbound tokens as Bearer; bound ones only with their binding;
 * - `dpop`: only DPoP-bound tokens (RFC 9449), with their proof;
 * - `mtls`: only certificate-bound tokens (RFC 8705), over their certificate;
 * - `any`: only bound tokens, either kind.
 * A token carrying `cnf` must present its binding under every mode: a
 * stolen bound token used as Bearer is refused everywhere.
 */
export type BindingMode = 'optional' | 'dpop' | 'mtls' | 'any'

export const BINDING_MODES: readonly BindingMode[] = ['optional', 'dpop', 'mtls', 'any']

/** How the request presented its token. */
export interface Presentation {
  /** The verified DPoP proof, when the request used the DPoP scheme. */
  readonly proof: VerifiedProof | undefined
  /** The client certificate of the request (read only when a check needs it). */
  readonly certificate: () => ClientCertificate | undefined
}

/** Which binding the request proved: `dpop`, `mtls`, both, or none (an unbound bearer token). */
export type ProvenBinding = 'dpop' | 'mtls' | 'dpop+mtls' | 'none'

/** Checks the token's `cnf` against what the request presented, then the route's mode. */
export function checkBinding(principal: Principal, mode: BindingMode, presented: Presentation): ProvenBinding {
  const cnf = principal.confirmation
  const proof = presented.proof
  if (proof !== undefined) {
    if (cnf?.jkt === undefined) throw new GatewayError('token_binding_mismatch', 'the token sent with the DPoP scheme is not bound to a DPoP key')
    if (proof.jkt !== cnf.jkt) throw new GatewayError('token_binding_mismatch', 'the DPoP proof is signed with a key the token is not bound to')
  } else if (cnf?.jkt !== undefined) {
    throw new GatewayError('token_binding_missing', 'the token is DPoP-bound: send it with the DPoP scheme and a DPoP proof')
  }
  if (cnf?.x5t !== undefined) {
    const certificate = presented.certificate()
    if (certificate === undefined) throw new GatewayError('token_binding_missing', 'the token is bound to a client certificate, and the request presented none')
    if (certificate.x5t !== cnf.x5t) throw new GatewayError('token_binding_mismatch', 'the token is bound to another client certificate')
  }
  switch (mode) {
    case 'dpop':
      if (cnf?.jkt === undefined) throw new GatewayError('token_binding_required', 'this route accepts DPoP-bound tokens only')
      break
    case 'mtls':
      if (cnf?.x5t === undefined) throw new GatewayError('token_binding_required', 'this route accepts certificate-bound tokens only')
      break
    case 'any':
      if (cnf === undefined) throw new GatewayError('token_binding_required', 'this route accepts sender-constrained (DPoP or certificate-bound) tokens only')
      break
  }
  if (cnf === undefined) return 'none'
  return cnf.jkt !== undefined ? (cnf.x5t !== undefined ? 'dpop+mtls' : 'dpop') : 'mtls'
}

/** The error codes binding checks raise (metrics count them by reason). */
export const BINDING_FAILURES: ReadonlySet<string> = new Set([
  'dpop_proof_invalid',
  'dpop_proof_replayed',
  'dpop_nonce_required',
  'token_binding_missing',
  'token_binding_mismatch',
  'token_binding_required',
  'token_binding_unsupported',
  'client_certificate_invalid',
])

/** How DPoP proofs are checked (the compiled `dpop` section). */
export interface DpopChecks {
  readonly proof: ProofSettings
  readonly nonce: NonceIssuer | undefined
}

/**
 * The proof of a request sent with the DPoP scheme, checked (RFC 9449 §4.3)
 * against the request as the client sent it, nonce included. `freshNonce`:
 * a newer nonce to hand the client with the answer (it used the previous one).
 */
export function presentedProof(rawHeaders: readonly string[], token: string, method: string, htu: string | undefined, checks: DpopChecks, nowSeconds: number): { proof: VerifiedProof; freshNonce: string | undefined } {
  const header = dpopProofHeader(rawHeaders)
  if (htu === undefined) throw new GatewayError('dpop_proof_invalid', 'the request URI cannot be compared with the DPoP proof\'s htu (no Host)')
  const proof = verifyProof(header, checks.proof, { method, htu, accessToken: token, nowSeconds })
  const nonces = checks.nonce
  if (nonces === undefined) return { proof, freshNonce: undefined }
  const state = proof.nonce === undefined ? 'invalid' : nonces.check(proof.nonce, nowSeconds)
  if (state === 'invalid') {
    throw new GatewayError('dpop_nonce_required', proof.nonce === undefined ? 'this resource requires a DPoP nonce' : 'the DPoP nonce is not current', { dpopNonce: nonces.current(nowSeconds) })
  }
  return { proof, freshNonce: state === 'stale' ? nonces.current(nowSeconds) : undefined }
}
