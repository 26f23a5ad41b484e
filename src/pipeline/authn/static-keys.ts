import { createPublicKey } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { JWK } from 'jose'
import { MIN_RSA_BITS, publicSigningKeys, vetKeys } from './remote-jwks.js'

export interface StaticKeySpec {
  readonly file: string
  readonly kid?: string | undefined
  readonly alg?: string | undefined
}

/**
 * Reads verification keys from files: a PEM public key (SPKI), a JWK, or a
 * JWK Set. Private keys are refused: the gateway only ever needs public ones,
 * and a private key in its config is a key that leaks.
 */
export async function loadStaticKey(path: string, spec: StaticKeySpec, algorithms: readonly string[]): Promise<JWK[]> {
  const text = await readFile(path, 'utf8')
  const trimmed = text.trim()
  if (trimmed.startsWith('-----BEGIN')) {
    if (/PRIVATE KEY-----/.test(trimmed)) throw new Error('the file holds a private key; give the public key only')
    const jwk = createPublicKey(trimmed).export({ format: 'jwk' }) as JWK
    if (spec.kid !== undefined) jwk.kid = spec.kid
    if (spec.alg !== undefined) jwk.alg = spec.alg
    jwk.use = 'sig'
    return vetted([jwk], algorithms)
  }
  const doc = JSON.parse(trimmed) as unknown
  const set = doc !== null && typeof doc === 'object' && 'keys' in doc ? doc : { keys: [doc] }
  const all = (set as { keys: unknown[] }).keys
  const kept = publicSigningKeys(set).keys
  if (kept.length !== all.length) throw new Error('the file holds a private, symmetric or non-signing key; give public signing keys only')
  if (kept.length === 0) throw new Error('the file holds no key')
  return vetted(kept, algorithms)
}

/** Refuses keys that cannot verify tokens (see vetKeys): a configuration error, not a refusal per request. */
function vetted(keys: JWK[], algorithms: readonly string[]): JWK[] {
  const { rejected } = vetKeys({ keys }, algorithms)
  const first = rejected[0]
  if (first === undefined) return keys
  if (first.reason === 'too_weak') throw new Error(`RSA keys must have at least ${MIN_RSA_BITS} bits`)
  throw new Error(first.reason === 'unusable' ? 'the key cannot be imported' : "the key is for none of the issuer's algorithms")
}
