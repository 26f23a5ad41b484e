import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { JWK } from 'jose'

export type SigningAlg = 'ES256' | 'EdDSA' | 'RS256'

export interface SigningKey {
  readonly kid: string
  readonly alg: SigningAlg
  readonly privateKey: KeyObject
  readonly publicJwk: JWK
}

function algFor(key: KeyObject): SigningAlg {
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA'
  if (key.asymmetricKeyType === 'rsa') return 'RS256'
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256'
  throw new Error(`unsupported key type ${key.asymmetricKeyType} (use P-256, Ed25519 or RSA)`)
}

export function signingKey(privateKey: KeyObject, kid: string, alg?: SigningAlg): SigningKey {
  const natural = algFor(privateKey)
  if (alg !== undefined && alg !== natural) throw new Error(`the key is for ${natural}, not ${alg}`)
  if (natural === 'RS256' && (privateKey.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) throw new Error('RSA keys must have at least 2048 bits')
  const publicJwk = { ...(createPublicKey(privateKey).export({ format: 'jwk' }) as JWK), kid, alg: natural, use: 'sig' }
  return { kid, alg: natural, privateKey, publicJwk }
}

/** Reads a private signing key: PKCS#8 (or SEC1/PKCS#1) PEM, or a private JWK. */
export async function loadSigningKey(path: string, kid: string, alg?: SigningAlg): Promise<SigningKey> {
  const text = (await readFile(path, 'utf8')).trim()
  const key = text.startsWith('-----BEGIN')
    ? createPrivateKey(text)
    : createPrivateKey({ key: JSON.parse(text) as JWK & { kty: string }, format: 'jwk' })
  return signingKey(key, kid, alg)
}

/** A key for development setups that configure none; it lives as long as the process. */
export function generateSigningKey(type: 'p256' | 'ed25519' = 'p256'): SigningKey {
  const { privateKey } = type === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return signingKey(privateKey, `dev-${Date.now().toString(36)}`)
}
