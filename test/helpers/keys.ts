import { KeyObject, sign as cryptoSign } from 'node:crypto'
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload, type CryptoKey } from 'jose'

export type Alg = 'RS256' | 'ES256' | 'EdDSA' | 'PS256' | 'ES384'

export interface TestKey {
  readonly alg: Alg
  readonly kid: string
  readonly privateKey: CryptoKey
  readonly publicJwk: JWK
}

let counter = 0

/** A fresh signing key; tests generate their own, none is ever committed. */
export async function makeKey(alg: Alg, kid = `${alg.toLowerCase()}-${++counter}-${Date.now()}`): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' }
  return { alg, kid, privateKey, publicJwk }
}

export interface SignOptions {
  header?: Record<string, unknown>
  /** Seconds from now; negative for the past. Default 300. */
  expiresIn?: number
}

export async function sign(key: TestKey, claims: JWTPayload, options: SignOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ iat: now, exp: now + (options.expiresIn ?? 300), ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'at+jwt', ...options.header })
    .sign(key.privateKey)
}

export function b64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url')
}

/** Signs any header, even one jose would refuse to produce (RS256 only). */
export function signRawRs256(key: TestKey, header: Record<string, unknown>, payload: Record<string, unknown>): string {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`
  const signature = cryptoSign('sha256', Buffer.from(input), KeyObject.from(key.privateKey))
  return `${input}.${signature.toString('base64url')}`
}
