import { createHash, generateKeyPairSync, randomUUID, sign as cryptoSign, type KeyObject } from 'node:crypto'

// A DPoP client (RFC 9449 §4): a key pair and proofs made with it by hand
// (node:crypto), so that tests can produce every malformed proof too.

export type ProofAlg = 'ES256' | 'ES384' | 'RS256' | 'PS256' | 'EdDSA'

export interface DpopKey {
  readonly alg: ProofAlg
  readonly privateKey: KeyObject
  /** The public JWK as a proof carries it. */
  readonly jwk: Record<string, string>
  /** Its RFC 7638 thumbprint (what cnf.jkt holds). */
  readonly jkt: string
}

export function makeDpopKey(alg: ProofAlg = 'ES256', rsaBits = 2048): DpopKey {
  const pair =
    alg === 'ES256'
      ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
      : alg === 'ES384'
        ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
        : alg === 'EdDSA'
          ? generateKeyPairSync('ed25519')
          : generateKeyPairSync('rsa', { modulusLength: rsaBits })
  const jwk = pair.publicKey.export({ format: 'jwk' }) as Record<string, string>
  const members = jwk.kty === 'EC' ? ['crv', 'kty', 'x', 'y'] : jwk.kty === 'RSA' ? ['e', 'kty', 'n'] : ['crv', 'kty', 'x']
  const input = `{${members.map((m) => `"${m}":"${jwk[m]}"`).join(',')}}`
  return { alg, privateKey: pair.privateKey, jwk, jkt: createHash('sha256').update(input).digest('base64url') }
}

export function ath(token: string): string {
  return createHash('sha256').update(token).digest('base64url')
}

export interface ProofOptions {
  htm: string
  htu: string
  /** The access token the proof goes with (its ath); omit for token-endpoint proofs. */
  token?: string
  /** Header members to replace or add (undefined removes one). */
  header?: Record<string, unknown>
  /** Payload members to replace or add (undefined removes one). */
  claims?: Record<string, unknown>
  /** Signs with this key instead (the header still shows `key`'s jwk unless replaced). */
  signWith?: DpopKey
  /** Flips a bit of the signature. */
  tamper?: boolean
}

function drop(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined))
}

/** A DPoP proof: typ dpop+jwt, the key's jwk, jti, htm, htu, iat, and ath when a token is given. */
export function proof(key: DpopKey, options: ProofOptions): string {
  const header = drop({ typ: 'dpop+jwt', alg: key.alg, jwk: key.jwk, ...options.header })
  const claims = drop({
    jti: randomUUID(),
    htm: options.htm,
    htu: options.htu,
    iat: Math.floor(Date.now() / 1000),
    ...(options.token !== undefined ? { ath: ath(options.token) } : {}),
    ...options.claims,
  })
  const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`
  const signer = options.signWith ?? key
  const hash = signer.alg === 'EdDSA' ? null : signer.alg === 'ES384' ? 'sha384' : 'sha256'
  const keyInput =
    signer.alg.startsWith('ES')
      ? { key: signer.privateKey, dsaEncoding: 'ieee-p1363' as const }
      : signer.alg === 'PS256'
        ? { key: signer.privateKey, padding: 6, saltLength: 32 }
        : signer.privateKey
  const signature = cryptoSign(hash, Buffer.from(input), keyInput)
  if (options.tamper) signature[0] = signature[0]! ^ 1
  return `${input}.${signature.toString('base64url')}`
}

export function dpopAuth(token: string): [string, string] {
  return ['Authorization', `DPoP ${token}`]
}
