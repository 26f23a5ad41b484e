import { GatewayError } from '../../errors.js'
import { findParams } from './param-names.js'

/** RFC 6750 §2.1: `Bearer` 1*SP b64token, the scheme case-insensitive; RFC 9449 §7.1: `DPoP` the same way. */
const BEARER = /^(bearer|dpop) +([A-Za-z0-9\-._~+/]+=*) *$/i
const SCHEME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+(?: |$)/
const MAX_TOKEN_LENGTH = 16 * 1024
/** Longer Authorization headers are not remembered on their connection (real tokens are well below this). */
const MAX_REMEMBERED_HEADER = 4 * 1024

/** Something that keys its cache by a value derived from the token alone (a hash), never by the token itself. */
export interface TokenKeyed {
  cacheKey(token: string): string
}

/**
 * A bearer token as the pipeline carries it. Each cache key derived from it
 * is computed once per token object: a client on a keep-alive connection
 * sends the same Authorization header on every request, and its connection
 * hands back the same token object (see extractBearer).
 */
export class BearerToken {
  private keys: Map<TokenKeyed, string> | undefined

  /**
   * @param scheme `dpop` when sent as `Authorization: DPoP …` (the request
   *   must then carry a DPoP proof; see pipeline/binding/)
   */
  constructor(
    readonly value: string,
    readonly scheme: 'bearer' | 'dpop' = 'bearer',
  ) {}

  /** `by.cacheKey(value)`, computed once per `by` (whose key must depend on the token alone). */
  keyFor(by: TokenKeyed): string {
    let key = this.keys?.get(by)
    if (key === undefined) {
      key = by.cacheKey(this.value)
      ;(this.keys ??= new Map()).set(by, key)
    }
    return key
  }
}

/**
 * The last Authorization header each open connection sent, with the token
 * taken from it. It lives in process memory with the connection (as the
 * request being served does) and goes with it; it is never written to a
 * cache, a shared store or a log.
 */
const lastOnConnection = new WeakMap<object, { readonly header: string; readonly token: BearerToken }>()

export interface CredentialSources {
  /** Node's `rawHeaders`: [name, value, name, value, …]. */
  readonly rawHeaders: readonly string[]
  /** The raw query string, with or without its leading `?`. */
  readonly query: string
  /**
   * The client connection (its socket), when the request has one: the token
   * taken from an Authorization header is remembered there, and the same
   * header again on that connection is not parsed again.
   */
  readonly connection?: object | undefined
}

/**
 * Takes the one bearer token of a request (RFC 6750).
 *
 * The token must come in the `Authorization` header. A second `Authorization`
 * header, or an `access_token` in the query next to the header, is
 * `token_duplicated`: the gateway would verify one token and the backend
 * could act on the other (a form body is checked once the request is
 * allowed: see handler.ts). An `access_token` in the query alone is
 * `token_location_unsupported` (tokens in URLs end up in logs).
 * A request with no bearer credential at all is `token_missing`.
 * These checks run on every request; only the parse of a header its
 * connection sent before (the very same string) is skipped.
 */
export function extractBearer(sources: CredentialSources): BearerToken {
  let header: string | undefined
  const raw = sources.rawHeaders
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    if (name.length === 13 && name.toLowerCase() === 'authorization') {
      if (header !== undefined) throw new GatewayError('token_duplicated', 'the request carries more than one Authorization header')
      header = raw[i + 1]!
    }
  }
  const elsewhere = hasAccessTokenParam(sources.query)
  if (header === undefined) {
    if (elsewhere) {
      throw new GatewayError('token_location_unsupported', 'send the access token in the Authorization header, not in the query or body')
    }
    throw new GatewayError('token_missing', 'the request carries no bearer token')
  }
  if (elsewhere) throw new GatewayError('token_duplicated', 'the request carries an access token in more than one place')
  const connection = sources.connection
  const last = connection === undefined ? undefined : lastOnConnection.get(connection)
  if (last !== undefined && last.header === header) return last.token
  const match = BEARER.exec(header)
  if (match === null) {
    // Another scheme (Basic…) is not a bearer token; a malformed Bearer or DPoP credential is a bad request.
    if (SCHEME.test(header) && !/^(bearer|dpop)(?: |$)/i.test(header)) {
      throw new GatewayError('token_missing', 'the request carries no bearer token')
    }
    throw new GatewayError('authorization_malformed', 'the Authorization header is not a well-formed Bearer or DPoP credential')
  }
  const value = match[2]!
  if (value.length > MAX_TOKEN_LENGTH) throw new GatewayError('authorization_malformed', 'the bearer token is too long')
  const token = new BearerToken(value, match[1]!.length === 4 ? 'dpop' : 'bearer')
  if (connection !== undefined && header.length <= MAX_REMEMBERED_HEADER) lastOnConnection.set(connection, { header, token })
  return token
}

/**
 * The one DPoP proof of a request sent with the DPoP scheme (RFC 9449 §4.3:
 * exactly one DPoP header). Refused when missing or repeated.
 */
export function dpopProofHeader(rawHeaders: readonly string[]): string {
  let proof: string | undefined
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!
    if (name.length === 4 && name.toLowerCase() === 'dpop') {
      if (proof !== undefined) throw new GatewayError('dpop_proof_invalid', 'the request carries more than one DPoP header')
      proof = rawHeaders[i + 1]!
    }
  }
  if (proof === undefined || proof === '') throw new GatewayError('dpop_proof_invalid', 'a token sent with the DPoP scheme needs a DPoP proof header')
  return proof
}

/** Whether a query or form text carries a parameter some framework reads as `access_token` (see param-names.ts). */
export function hasAccessTokenParam(text: string): boolean {
  return findParams(text, ACCESS_TOKEN, ACCESS_TOKEN_HINTS).length > 0
}

const ACCESS_TOKEN = ['access_token']
const ACCESS_TOKEN_HINTS = ['token']
