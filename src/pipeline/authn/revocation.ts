import { GatewayError } from '../../errors.js'
import type { RevocationList } from '../../cache/revocation-list.js'
import type { Principal } from './principal.js'

/**
 * Refuses a principal whose token was revoked (401 token_revoked): checked
 * on every request, cached principals included. `token` gives the raw token,
 * hashed only while some token is denied by its hash.
 */
export function checkNotRevoked(principal: Principal, list: RevocationList, token?: () => string): void {
  if (list.size > 0 && list.denies(principal.issuer, principal.claims, principal.subject, principal.clientId, token)) {
    throw new GatewayError('token_revoked', 'the token has been revoked')
  }
}
