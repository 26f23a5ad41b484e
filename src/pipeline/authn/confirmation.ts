import { GatewayError } from '../../errors.js'

/**
 * What a sender-constrained token is bound to (RFC 7800 `cnf`): the RFC 7638
 * thumbprint of a DPoP key (RFC 9449 `jkt`) and/or the SHA-256 thumbprint of
 * a client certificate (RFC 8705 `x5t#S256`), both base64url.
 */
export interface Confirmation {
  readonly jkt: string | undefined
  readonly x5t: string | undefined
}

/** base64url of a SHA-256: 43 characters, no padding. */
const SHA256_B64URL = /^[A-Za-z0-9_-]{43}$/

/**
 * The binding a token's `cnf` claim (or an introspection result's `cnf`)
 * names; undefined for a token without one. A `cnf` the gateway cannot
 * check (no `jkt` or `x5t#S256`, only `jwk`, `kid` or some other method) or
 * that is malformed refuses the token: accepting it as a bearer token would
 * let whoever stole it use it.
 */
export function confirmationOf(cnf: unknown): Confirmation | undefined {
  if (cnf === undefined || cnf === null) return undefined
  if (typeof cnf !== 'object' || Array.isArray(cnf)) throw new GatewayError('claims_invalid', 'the "cnf" claim is not an object')
  const c = cnf as Record<string, unknown>
  const jkt = c.jkt
  const x5t = c['x5t#S256']
  if (jkt !== undefined && (typeof jkt !== 'string' || !SHA256_B64URL.test(jkt))) throw new GatewayError('claims_invalid', 'the "cnf" claim\'s "jkt" is not a base64url SHA-256 thumbprint')
  if (x5t !== undefined && (typeof x5t !== 'string' || !SHA256_B64URL.test(x5t))) throw new GatewayError('claims_invalid', 'the "cnf" claim\'s "x5t#S256" is not a base64url SHA-256 thumbprint')
  if (jkt === undefined && x5t === undefined) throw new GatewayError('token_binding_unsupported', 'the token is bound ("cnf") by a method the gateway cannot check (only jkt and x5t#S256 are)')
  return { jkt: jkt as string | undefined, x5t: x5t as string | undefined }
}
