import { Interner } from '../../cache/intern.js'
import { GatewayError } from '../../errors.js'
import { readClaim, type ClaimPath } from './claim-path.js'
import { confirmationOf, type Confirmation } from './confirmation.js'

/**
 * Who a request acts for, as vouched for by a trusted issuer. Every
 * authenticator produces one; authorization and identity headers read only this.
 */
export interface Principal {
  /** The id of the issuer entry in the config that vouched for the token. */
  readonly issuerId: string
  /** The issuer's `iss`. */
  readonly issuer: string
  readonly subject: string | undefined
  /** `client_id`, else `azp`. */
  readonly clientId: string | undefined
  readonly scopes: ReadonlySet<string>
  /** Seconds since the epoch. */
  readonly expiresAt: number | undefined
  readonly claims: Readonly<Record<string, unknown>>
  /** What the token is bound to (`cnf`), when it is sender-constrained. */
  readonly confirmation: Confirmation | undefined
  /**
   * The identity headers made from it (mutate/headers.ts), and the header
   * names they were made for (a reload makes others). A principal never
   * changes and comes back from the token caches, so they are made once;
   * kept on the principal itself rather than in a WeakMap beside it (a cached
   * principal then costs no ephemeron and no wrapper object).
   */
  identityHeadersFor?: object | undefined
  identityHeaders?: Readonly<Record<string, string>> | undefined
}

/** RFC 6749 §3.3 scope-token: printable ASCII except space, `"` and `\`. */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/

function scopeToken(s: string, claim: string): string {
  if (!SCOPE_TOKEN.test(s)) throw new GatewayError('claims_invalid', `the "${claim}" claim holds a value that is not a scope`)
  return s
}

/** Scope sets kept once per distinct set: cached principals share them (most tokens carry one of a few). */
const sharedSets = new Interner<ReadonlySet<string>>(1024)

/** The kept set equal to `scopes` (never changed by anyone: principals are read-only). */
export function sharedScopes(scopes: ReadonlySet<string>): ReadonlySet<string> {
  let key = ''
  for (const s of scopes) key += s + ' '
  return sharedSets.get(key, () => scopes)
}

/** Where scopes are read by default: `scope` and `scp`. */
export const DEFAULT_SCOPE_CLAIMS: readonly ClaimPath[] = [['scope'], ['scp']]

/**
 * The granted scopes, merged from the issuer's scope claims: by default
 * `scope` (RFC 9068: a space-delimited string) and `scp` (a string or an
 * array of strings, as Entra ID and Okta send it); an issuer may name others
 * (`roles`, `permissions`, `realm_access.roles`). `scope` itself must be a
 * string; the others a string or an array of strings. Every scope must be
 * an RFC 6749 scope-token: an array element holding a space (which would
 * read as two scopes once joined into a header), a tab or any other
 * character outside the grammar refuses the token.
 */
export function scopesFromClaims(claims: Readonly<Record<string, unknown>>, paths: readonly ClaimPath[] = DEFAULT_SCOPE_CLAIMS): Set<string> {
  const scopes = new Set<string>()
  for (const path of paths) {
    const value = readClaim(claims, path)
    if (value === undefined || value === null) continue
    const claim = path.join('.')
    if (typeof value === 'string') {
      for (const s of value.split(' ')) if (s !== '') scopes.add(scopeToken(s, claim))
    } else if (claim !== 'scope' && Array.isArray(value) && value.every((s) => typeof s === 'string')) {
      for (const s of value as string[]) scopes.add(scopeToken(s, claim))
    } else {
      throw new GatewayError('claims_invalid', claim === 'scope' ? 'the "scope" claim is not a string' : `the "${claim}" claim is neither a string nor a list of strings`)
    }
  }
  return scopes
}

export function principalFromClaims(issuerId: string, issuer: string, claims: Readonly<Record<string, unknown>>, scopeClaims: readonly ClaimPath[] = DEFAULT_SCOPE_CLAIMS): Principal {
  const text = (name: string): string | undefined => {
    const v = claims[name]
    if (v === undefined) return undefined
    if (typeof v !== 'string') throw new GatewayError('claims_invalid', `the "${name}" claim is not a string`)
    return v
  }
  const exp = claims.exp
  return {
    issuerId,
    issuer,
    subject: text('sub'),
    clientId: text('client_id') ?? text('azp'),
    scopes: scopesFromClaims(claims, scopeClaims),
    expiresAt: typeof exp === 'number' ? exp : undefined,
    claims,
    confirmation: confirmationOf(claims.cnf),
    identityHeadersFor: undefined,
    identityHeaders: undefined,
  }
}
