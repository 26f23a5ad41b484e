import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'

/** scrypt cost: N = 2^15, r = 8, p = 1 (about 32 MiB and tens of ms per check). */
export const SCRYPT_LOG_N = 15
export const SCRYPT_R = 8
export const SCRYPT_P = 1
const KEY_LENGTH = 32
const FORMAT = /^\$scrypt\$ln=([0-9]+),r=([0-9]+),p=([0-9]+)\$([A-Za-z0-9_-]+)\$([A-Za-z0-9_-]+)$/

function derive(secret: string, salt: Buffer, ln: number, r: number, p: number, length: number): Promise<Buffer> {
  const N = 2 ** ln
  const options: ScryptOptions = { N, r, p, maxmem: 256 * N * r + 1024 * 1024 }
  return new Promise((resolve, reject) => scrypt(secret, salt, length, options, (err, key) => (err ? reject(err) : resolve(key))))
}

/** `$scrypt$ln=15,r=8,p=1$<salt>$<hash>`, base64url; what `gateway hash-secret` prints. */
export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(16)
  const hash = await derive(secret, salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P, KEY_LENGTH)
  return `$scrypt$ln=${SCRYPT_LOG_N},r=${SCRYPT_R},p=${SCRYPT_P}$${salt.toString('base64url')}$${hash.toString('base64url')}`
}

export interface ParsedHash {
  readonly ln: number
  readonly r: number
  readonly p: number
  readonly salt: Buffer
  readonly hash: Buffer
}

export function parseSecretHash(text: string): ParsedHash | undefined {
  const m = FORMAT.exec(text)
  if (!m) return undefined
  const [ln, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])]
  if (ln < 10 || ln > 20 || r < 1 || r > 32 || p < 1 || p > 16) return undefined
  return { ln, r, p, salt: Buffer.from(m[4]!, 'base64url'), hash: Buffer.from(m[5]!, 'base64url') }
}

/** Compares in constant time; the cost is the same whether the secret is right or not. */
export async function verifySecret(secret: string, stored: ParsedHash): Promise<boolean> {
  const candidate = await derive(secret, stored.salt, stored.ln, stored.r, stored.p, stored.hash.length)
  return timingSafeEqual(candidate, stored.hash)
}

/** Used for unknown client ids, so that they cost as much as known ones. */
export const DUMMY_HASH: ParsedHash = {
  ln: SCRYPT_LOG_N,
  r: SCRYPT_R,
  p: SCRYPT_P,
  salt: Buffer.alloc(16, 7),
  hash: Buffer.alloc(KEY_LENGTH, 0),
}
