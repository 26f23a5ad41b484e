import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload, type CryptoKey } from 'jose'

export type Alg = 'RS256' | 'ES256' | 'EdDSA'

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
