import { createHash, createPublicKey, type KeyObject } from 'node:crypto'
import { GatewayError } from '../errors.js'
import { verifySignature } from './jws-signature.js'

/**
 * DPoP proofs (RFC 9449 §4.3), checked with node:crypto on the event loop
 * (no thread-pool hop): every check of the RFC's list, in an order where
 * the cheap ones come first and the signature is verified before any claim
 * is believed.
 */

/** Asymmetric JWS algorithms a proof may use (never HMAC, never "none"). */
export const DPOP_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA', 'Ed25519'] as const
export type DpopAlgorithm = (typeof DPOP_ALGORITHMS)[number]

/** A proof is a header value: real ones are well under 2 KiB (an RSA-4096 key makes the largest). */
export const MAX_PROOF_BYTES = 8 * 1024
const MAX_JTI = 256
const COMPACT = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/

export interface ProofSettings {
  readonly algorithms: ReadonlySet<string>
  /** How old a proof may be (its iat), in seconds. */
  readonly maxAgeSeconds: number
  /** Tolerated clock difference, in seconds. */
  readonly skewSeconds: number
}

/** What the proof must match: the request as the client sent it. */
export interface ProofContext {
  readonly method: string
  /** The request URI as the client saw it, normalised (see normalizeHtu). */
  readonly htu: string
  /** The access token the proof must hash (ath); none at a token endpoint, which issues one. */
  readonly accessToken: string | undefined
  readonly nowSeconds: number
}

export interface VerifiedProof {
  /** RFC 7638 thumbprint of the proof's key, base64url. */
  readonly jkt: string
  readonly jti: string
  readonly iat: number
  /** The server nonce the proof carries, if any. */
  readonly nonce: string | undefined
}

/** What a proof's jwk must be for its alg (the signature itself: oauth/jws-signature.ts). */
interface KeyProfile {
  readonly kty: string
  readonly crv?: string
}

const PROFILES: Readonly<Record<DpopAlgorithm, KeyProfile>> = {
  ES256: { kty: 'EC', crv: 'P-256' },
  ES384: { kty: 'EC', crv: 'P-384' },
  ES512: { kty: 'EC', crv: 'P-521' },
  RS256: { kty: 'RSA' },
  RS384: { kty: 'RSA' },
  RS512: { kty: 'RSA' },
  PS256: { kty: 'RSA' },
  PS384: { kty: 'RSA' },
  PS512: { kty: 'RSA' },
  EdDSA: { kty: 'OKP', crv: 'Ed25519' },
  Ed25519: { kty: 'OKP', crv: 'Ed25519' },
}

/** Private members of JWKs (RFC 7518 §6): a proof carrying one is refused. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']

function invalid(detail: string): never {
  throw new GatewayError('dpop_proof_invalid', detail)
}

function decodeJson(part: string, what: string): Record<string, unknown> {
  let doc: unknown
  try {
    doc = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'))
  } catch {
    invalid(`the DPoP proof's ${what} is not JSON`)
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) invalid(`the DPoP proof's ${what} is not a JSON object`)
  return doc as Record<string, unknown>
}

function b64urlMember(jwk: Record<string, unknown>, name: string): string {
  const v = jwk[name]
  if (typeof v !== 'string' || !/^[A-Za-z0-9_-]+$/.test(v)) invalid(`the DPoP proof's jwk has no valid "${name}"`)
  return v
}

/** RFC 7638: the required members, in lexicographic order, without whitespace. */
function thumbprintInput(jwk: Record<string, unknown>, profile: KeyProfile): string {
  switch (profile.kty) {
    case 'EC':
      return `{"crv":"${profile.crv}","kty":"EC","x":"${b64urlMember(jwk, 'x')}","y":"${b64urlMember(jwk, 'y')}"}`
    case 'RSA':
      return `{"e":"${b64urlMember(jwk, 'e')}","kty":"RSA","n":"${b64urlMember(jwk, 'n')}"}`
    default:
      return `{"crv":"${profile.crv}","kty":"OKP","x":"${b64urlMember(jwk, 'x')}"}`
  }
}

/** The RFC 7638 SHA-256 thumbprint of a public JWK, base64url (what `cnf.jkt` holds). */
export function jwkThumbprint(jwk: Record<string, unknown>): string {
  const profile = Object.values(PROFILES).find((p) => p.kty === jwk.kty && (p.crv === undefined || p.crv === jwk.crv))
  if (!profile) invalid('the DPoP proof\'s jwk is of an unsupported type')
  return createHash('sha256').update(thumbprintInput(jwk, profile)).digest('base64url')
}

/**
 * Imported keys by thumbprint: a client proves with the same key on every
 * request, and importing it is most of a proof's cost after the signature.
 * Bounded; the oldest go first.
 */
class KeyCache {
  private readonly keys = new Map<string, KeyObject>()
  constructor(private readonly max: number) {}

  get(jkt: string, input: string, profile: KeyProfile): KeyObject {
    let key = this.keys.get(jkt)
    if (key !== undefined) return key
    try {
      key = createPublicKey({ key: JSON.parse(input) as import('node:crypto').JsonWebKey, format: 'jwk' })
    } catch {
      invalid('the DPoP proof\'s jwk is not a usable public key')
    }
    if (profile.kty === 'RSA' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) invalid('the DPoP proof\'s RSA key is shorter than 2048 bits')
    if (this.keys.size >= this.max) this.keys.delete(this.keys.keys().next().value!)
    this.keys.set(jkt, key)
    return key
  }
}

const keyCache = new KeyCache(10_000)

interface CheckedHeader {
  readonly profile: KeyProfile
  readonly alg: string
  readonly jkt: string
  readonly publicKey: KeyObject
}

/**
 * Proof headers already checked, by their exact base64url text: a client
 * signs every proof with the same key, so the same header (typ, alg, jwk)
 * comes again on each of its requests. Only the header's own checks are
 * cached (the algorithm allow-list is checked again on every proof, since
 * settings change on reload); the signature is verified every time.
 */
const headers = new Map<string, CheckedHeader>()
const MAX_HEADERS = 10_000

function proofHeader(segment: string, settings: ProofSettings): CheckedHeader {
  let checked = headers.get(segment)
  if (checked === undefined) {
    checked = checkHeader(segment)
    if (headers.size >= MAX_HEADERS) headers.delete(headers.keys().next().value!)
    headers.set(segment, checked)
  }
  if (!settings.algorithms.has(checked.alg)) invalid('the DPoP proof\'s alg is not one of the accepted asymmetric algorithms')
  return checked
}

function checkHeader(segment: string): CheckedHeader {
  const header = decodeJson(segment, 'header')
  // A media type (RFC 7515 §4.1.9): case-insensitive, "application/" implied when absent.
  const typ = typeof header.typ === 'string' ? header.typ.toLowerCase() : undefined
  if (typ !== 'dpop+jwt' && typ !== 'application/dpop+jwt') invalid('the DPoP proof\'s typ is not "dpop+jwt"')
  const alg = header.alg
  if (typeof alg !== 'string' || !Object.hasOwn(PROFILES, alg)) invalid('the DPoP proof\'s alg is not one of the accepted asymmetric algorithms')
  if (header.crit !== undefined) invalid('the DPoP proof has critical header parameters the gateway does not understand')
  const profile = PROFILES[alg as DpopAlgorithm]
  const jwk = header.jwk
  if (jwk === null || typeof jwk !== 'object' || Array.isArray(jwk)) invalid('the DPoP proof has no "jwk" header')
  const key = jwk as Record<string, unknown>
  if (key.kty !== profile.kty || (profile.crv !== undefined && key.crv !== profile.crv)) invalid(`the DPoP proof's jwk does not fit its alg ${alg}`)
  if (PRIVATE_MEMBERS.some((m) => Object.hasOwn(key, m))) invalid('the DPoP proof\'s jwk holds a private key')
  const input = thumbprintInput(key, profile)
  const jkt = createHash('sha256').update(input).digest('base64url')
  return { profile, alg, jkt, publicKey: keyCache.get(jkt, input, profile) }
}

/**
 * Checks one DPoP proof against the request it came with. Throws
 * `dpop_proof_invalid` for any failed check; nonce and replay (jti) are
 * checked by the caller with what this returns.
 */
export function verifyProof(proof: string, settings: ProofSettings, ctx: ProofContext): VerifiedProof {
  if (proof.length > MAX_PROOF_BYTES) invalid('the DPoP proof is too long')
  const parts = COMPACT.exec(proof)
  if (parts === null) invalid('the DPoP proof is not a signed JWT')
  const { alg, jkt, publicKey } = proofHeader(parts[1]!, settings)
  const signed = Buffer.from(proof.slice(0, parts[1]!.length + 1 + parts[2]!.length), 'ascii')
  const ok = verifySignature(alg, publicKey, signed, Buffer.from(parts[3]!, 'base64url'))
  if (!ok) invalid('the DPoP proof\'s signature does not verify')

  const claims = decodeJson(parts[2]!, 'payload')
  const jti = claims.jti
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_JTI) invalid('the DPoP proof has no valid "jti"')
  if (claims.htm !== ctx.method) invalid('the DPoP proof\'s htm is not the request method')
  if (typeof claims.htu !== 'string' || normalizeHtu(claims.htu) !== ctx.htu) invalid('the DPoP proof\'s htu is not the request URI')
  const iat = claims.iat
  if (typeof iat !== 'number' || !Number.isFinite(iat)) invalid('the DPoP proof has no numeric "iat"')
  if (iat > ctx.nowSeconds + settings.skewSeconds) invalid('the DPoP proof was issued in the future')
  if (iat < ctx.nowSeconds - settings.maxAgeSeconds - settings.skewSeconds) invalid('the DPoP proof is too old')
  if (ctx.accessToken !== undefined && claims.ath !== accessTokenHash(ctx.accessToken)) invalid('the DPoP proof\'s ath is not the hash of the access token')
  const nonce = claims.nonce
  if (nonce !== undefined && typeof nonce !== 'string') invalid('the DPoP proof\'s nonce is not a string')
  return { jkt, jti, iat, nonce }
}

/** ath: base64url(SHA-256(the access token's ASCII)). */
export function accessTokenHash(token: string): string {
  return createHash('sha256').update(token, 'ascii').digest('base64url')
}

const UNRESERVED = /%(2[DdEe]|3[0-9]|4[1-9A-Fa-f]|5[0-9Aa]|5[Ff]|6[1-9A-Fa-f]|7[0-9Aa]|7[Ee])/g

/**
 * An HTTP URI without query and fragment, normalised as RFC 9449 §4.3 asks
 * (RFC 3986 §6.2.2 and §6.2.3): scheme and host lower-cased, the default
 * port dropped, dot segments removed, percent-encoded unreserved characters
 * decoded and other percent-encodings in upper case, an empty path as "/".
 * Undefined when it is not an absolute http(s) URI.
 */
export function normalizeHtu(uri: string): string | undefined {
  let url: URL
  try {
    url = new URL(uri)
  } catch {
    return undefined
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined
  if (url.username !== '' || url.password !== '') return undefined
  const path = url.pathname.replace(/%[0-9a-fA-F]{2}/g, (m) => m.toUpperCase()).replace(UNRESERVED, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)))
  return `${url.protocol}//${url.host}${path === '' ? '/' : path}`
}
