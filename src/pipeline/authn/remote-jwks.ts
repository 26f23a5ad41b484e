import { createLocalJWKSet, errors, type JSONWebKeySet, type JWK, type JWTVerifyGetKey } from 'jose'
import { GatewayError } from '../../errors.js'

export interface RemoteJwksOptions {
  readonly timeoutMs: number
  /** Least time between two fetches caused by an unknown `kid`. */
  readonly cooldownMs: number
  /** After this age the set is refreshed in the background; cached keys keep serving meanwhile. */
  readonly maxAgeMs: number
  readonly now?: () => number
  /** Observes every fetch (metrics, logs). */
  readonly onFetch?: (outcome: 'success' | 'failure', error?: unknown) => void
}

/** While no key set was ever loaded, a failed fetch is retried at most this often. */
export const NO_KEYS_RETRY_MS = 1000
/** A JWKS document larger than this is refused. */
export const MAX_JWKS_BYTES = 512 * 1024

/**
 * A JWKS endpoint's keys, cached.
 *
 * Unlike jose's `createRemoteJWKSet`, a failing endpoint never takes away keys
 * already loaded: stale keys keep verifying while the refresh is retried
 * (stale-while-error). A `kid` not in the set triggers one refetch, at most
 * once per cooldown however many tokens with random kids arrive, and
 * concurrent callers share the fetch in flight. Symmetric (`oct`) and private
 * keys in the document are dropped.
 */
export class RemoteJwks {
  private local: JWTVerifyGetKey | undefined
  private localJson = ''
  /** Incremented whenever the fetched key set differs from the one before. */
  version = 0
  private fetchedAt = Number.NEGATIVE_INFINITY
  private lastAttemptAt = Number.NEGATIVE_INFINITY
  private lastAttemptFailed = false
  private inFlight: Promise<boolean> | undefined
  private readonly now: () => number

  /**
   * @param url the JWKS URL, or how to find it (discovery)
   * @param source identifies where the keys come from, for reuse across reloads
   */
  constructor(
    private readonly url: string | (() => Promise<string>),
    readonly source: string,
    private readonly options: RemoteJwksOptions,
  ) {
    this.now = options.now ?? Date.now
  }

  /** Whether a reload may keep this instance (and its cached keys). */
  sameOptions(other: Pick<RemoteJwksOptions, 'timeoutMs' | 'cooldownMs' | 'maxAgeMs'>): boolean {
    return other.timeoutMs === this.options.timeoutMs && other.cooldownMs === this.options.cooldownMs && other.maxAgeMs === this.options.maxAgeMs
  }

  /** True once a key set has been loaded (readiness). */
  get hasKeys(): boolean {
    return this.local !== undefined
  }

  /** Loads the set ahead of the first request; failure is not fatal. */
  warm(): Promise<boolean> {
    return this.refresh()
  }

  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    const now = this.now()
    if (this.local === undefined) {
      if (this.inFlight) await this.inFlight
      else if (!this.lastAttemptFailed || now - this.lastAttemptAt >= NO_KEYS_RETRY_MS) await this.refresh()
      if (this.local === undefined) throw new GatewayError('dependency_unavailable', "the issuer's signing keys cannot be fetched")
    } else if (now - this.fetchedAt >= this.options.maxAgeMs && now - this.lastAttemptAt >= this.options.cooldownMs) {
      void this.refresh()
    }
    try {
      return await this.local(header, token)
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey)) throw err
      // An unknown kid: perhaps the issuer rotated its keys.
      if (this.inFlight) {
        await this.inFlight
      } else if (now - this.lastAttemptAt >= this.options.cooldownMs) {
        await this.refresh()
      } else if (this.lastAttemptFailed) {
        throw new GatewayError('dependency_unavailable', "the issuer's signing keys cannot be fetched", { cause: err })
      } else {
        throw err
      }
      if (this.lastAttemptFailed) {
        throw new GatewayError('dependency_unavailable', "the issuer's signing keys cannot be fetched", { cause: err })
      }
      return await this.local(header, token)
    }
  }

  private refresh(): Promise<boolean> {
    this.inFlight ??= this.fetchKeys().finally(() => {
      this.inFlight = undefined
    })
    return this.inFlight
  }

  private async fetchKeys(): Promise<boolean> {
    this.lastAttemptAt = this.now()
    try {
      const url = typeof this.url === 'string' ? this.url : await this.url()
      const jwks = await fetchJwks(url, this.options.timeoutMs)
      const json = JSON.stringify(jwks)
      if (json !== this.localJson) {
        this.local = createLocalJWKSet(jwks)
        this.localJson = json
        this.version++
      }
      this.fetchedAt = this.now()
      this.lastAttemptFailed = false
      this.options.onFetch?.('success')
      return true
    } catch (err) {
      this.lastAttemptFailed = true
      this.options.onFetch?.('failure', err)
      return false
    }
  }
}

async function fetchJwks(url: string, timeoutMs: number): Promise<JSONWebKeySet> {
  const res = await fetch(url, {
    headers: { accept: 'application/jwk-set+json, application/json' },
    redirect: 'error',
    signal: AbortSignal.timeout(timeoutMs),
  })
  if (res.status !== 200) {
    await res.body?.cancel()
    throw new Error(`JWKS endpoint answered ${res.status}`)
  }
  const text = await readLimited(res, MAX_JWKS_BYTES)
  return publicSigningKeys(JSON.parse(text) as unknown)
}

/** Keeps the asymmetric public keys of a JWK Set; refuses anything that is not one. */
export function publicSigningKeys(doc: unknown): JSONWebKeySet {
  if (doc === null || typeof doc !== 'object' || !Array.isArray((doc as { keys?: unknown }).keys)) {
    throw new Error('not a JWK Set: no "keys" array')
  }
  const keys = ((doc as { keys: unknown[] }).keys).filter(
    (k): k is JWK =>
      k !== null &&
      typeof k === 'object' &&
      typeof (k as JWK).kty === 'string' &&
      (k as JWK).kty !== 'oct' &&
      (k as JWK).d === undefined &&
      ((k as JWK).use === undefined || (k as JWK).use === 'sig'),
  )
  return { keys }
}

export async function readLimited(res: Response, maxBytes: number): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? '0')
  if (declared > maxBytes) {
    await res.body?.cancel()
    throw new Error(`response larger than ${maxBytes} bytes`)
  }
  if (!res.body) return ''
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of res.body) {
    size += chunk.byteLength
    if (size > maxBytes) throw new Error(`response larger than ${maxBytes} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}
