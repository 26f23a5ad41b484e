import { constants, KeyObject, verify, type webcrypto } from 'node:crypto'

/**
 * JWS signatures (RFC 7518 §3) verified with node:crypto on the event loop.
 *
 * WebCrypto's `subtle.verify`, which jose uses, runs each verification as a
 * job on the libuv thread pool: the request waits for a thread (behind file
 * system work, scrypt, other verifications) and pays two thread hops. On one
 * core, measured by `npm run bench` (its verification table): RS256 30 µs
 * here against 60 µs of CPU through WebCrypto, ES256 90 against 119, Ed25519
 * 128 against 136. Only the signature is done here; parsing and every claim
 * check stay with jose (pipeline/authn/jwt.ts).
 */

export interface SignatureProfile {
  /** The key type (node:crypto's asymmetricKeyType) the algorithm needs. */
  readonly keyTypes: readonly string[]
  /** The digest; null for EdDSA (which hashes itself). */
  readonly hash: string | null
  /** The EC curve (node:crypto's name). */
  readonly curve?: string
  /** ECDSA signatures in JOSE form (r || s) have exactly this length. */
  readonly sigBytes?: number
  readonly pss?: boolean
}

/** Asymmetric JWS algorithms (never HMAC, never "none"). */
export const SIGNATURE_PROFILES: Readonly<Record<string, SignatureProfile>> = Object.freeze({
  RS256: { keyTypes: ['rsa'], hash: 'sha256' },
  RS384: { keyTypes: ['rsa'], hash: 'sha384' },
  RS512: { keyTypes: ['rsa'], hash: 'sha512' },
  PS256: { keyTypes: ['rsa', 'rsa-pss'], hash: 'sha256', pss: true },
  PS384: { keyTypes: ['rsa', 'rsa-pss'], hash: 'sha384', pss: true },
  PS512: { keyTypes: ['rsa', 'rsa-pss'], hash: 'sha512', pss: true },
  ES256: { keyTypes: ['ec'], hash: 'sha256', curve: 'prime256v1', sigBytes: 64 },
  ES384: { keyTypes: ['ec'], hash: 'sha384', curve: 'secp384r1', sigBytes: 96 },
  ES512: { keyTypes: ['ec'], hash: 'sha512', curve: 'secp521r1', sigBytes: 132 },
  EdDSA: { keyTypes: ['ed25519', 'ed448'], hash: null },
  Ed25519: { keyTypes: ['ed25519'], hash: null },
})

/** RFC 8725 §3.5 and NIST: shorter RSA keys are refused (as jose does). */
export const MIN_RSA_MODULUS_BITS = 2048

/**
 * Whether `signature` is `alg`'s signature of `input` under `key`. False for
 * an unknown algorithm, a key that is not a public key of the algorithm's
 * type and curve, an RSA key under 2048 bits, or a signature of the wrong
 * length: never an exception for anything a token can carry.
 */
export function verifySignature(alg: string, key: KeyObject, input: Buffer, signature: Buffer): boolean {
  const profile = Object.hasOwn(SIGNATURE_PROFILES, alg) ? SIGNATURE_PROFILES[alg] : undefined
  if (profile === undefined || key.type !== 'public' || !profile.keyTypes.includes(key.asymmetricKeyType ?? '')) return false
  const details = key.asymmetricKeyDetails
  if (profile.curve !== undefined && details?.namedCurve !== profile.curve) return false
  if (profile.keyTypes[0] === 'rsa' && (details?.modulusLength ?? 0) < MIN_RSA_MODULUS_BITS) return false
  if (profile.sigBytes !== undefined && signature.length !== profile.sigBytes) return false
  try {
    return verify(
      profile.hash,
      input,
      profile.sigBytes !== undefined
        ? { key, dsaEncoding: 'ieee-p1363' }
        : profile.pss
          ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }
          : key,
      signature,
    )
  } catch {
    return false
  }
}

const converted = new WeakMap<object, KeyObject>()

/**
 * A verification key as node:crypto takes it: jose's key sets hand out
 * WebCrypto keys, converted once each (a key set holds a handful).
 */
export function keyObjectOf(key: unknown): KeyObject | undefined {
  if (key instanceof KeyObject) return key
  // The global class (node:crypto's webcrypto namespace has the type only, on Node 20).
  const CryptoKeyClass = (globalThis as { CryptoKey?: abstract new () => webcrypto.CryptoKey }).CryptoKey
  if (CryptoKeyClass === undefined || !(key instanceof CryptoKeyClass)) return undefined
  let known = converted.get(key)
  if (known === undefined) {
    known = KeyObject.from(key)
    converted.set(key, known)
  }
  return known
}
