import { createPublicKey } from 'node:crypto'
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWK, type JWTVerifyGetKey } from 'jose'
import { GatewayError } from '../../errors.js'
import { dependencyCall } from '../../http/dependency-call.js'
import { callStarted, withCallHeaders, type CallObserver } from '../../observe/calls.js'
import type { GetKey } from './jwt.js'

export interface RemoteJwksOptions {
  readonly timeoutMs: number
  /** Least time between two fetches caused by an unknown `kid`. */
  readonly cooldownMs: number
  /** After this age the set is refreshed in the background; cached keys keep serving meanwhile. */
  readonly maxAgeMs: number
  /** The issuer's algorithm allow-list: a set with no key for any of them is unusable. */
  readonly algorithms: readonly string[]
  readonly now?: () => number
  /** Observes every fetch (metrics, logs). */
  readonly onFetch?: (outcome: 'success' | 'failure', error?: unknown) => void
  /** Keys of a newly fetched set that were left out, once per set (metrics, logs). */
  readonly onRejectedKeys?: (rejected: readonly RejectedKey[]) => void
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
  /** Key ids of the set in force that were left out, and why. */
  private rejected: ReadonlyMap<string, RejectedKey['reason']> = new Map()
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
  sameOptions(other: Pick<RemoteJwksOptions, 'timeoutMs' | 'cooldownMs' | 'maxAgeMs' | 'algorithms'>): boolean {
    const o = this.options
    return other.timeoutMs === o.timeoutMs && other.cooldownMs === o.cooldownMs && other.maxAgeMs === o.maxAgeMs && other.algorithms.join() === o.algorithms.join()
  }

  /** True once a key set has been loaded (readiness). */
  get hasKeys(): boolean {
    return this.local !== undefined
  }

  /** Loads the set ahead of the first request; failure is not fatal. */
  warm(): Promise<boolean> {
    return this.refresh()
  }

  /** A key for a token; `calls` observes a fetch this lookup starts. */
  readonly getKey: GetKey = async (header, token, calls) => {
    const now = this.now()
    if (this.local === undefined) {
      if (this.inFlight) await this.inFlight
      else if (!this.lastAttemptFailed || now - this.lastAttemptAt >= NO_KEYS_RETRY_MS) await this.refresh(calls)
      if (this.local === undefined) throw new GatewayError('dependency_unavailable', "the issuer's signing keys cannot be fetched")
    } else if (now - this.fetchedAt >= this.options.maxAgeMs && now - this.lastAttemptAt >= this.options.cooldownMs) {
      void this.refresh()
    }
    try {
      return await this.local(header, token)
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey)) throw err
      const why = header.kid === undefined ? undefined : this.rejected.get(header.kid)
      if (why !== undefined) throw new GatewayError('key_unusable', why === 'too_weak' ? 'the token is signed with a key too weak to trust' : 'the token is signed with a key that cannot be used', { cause: err })
      // An unknown kid: perhaps the issuer rotated its keys.
      if (this.inFlight) {
        await this.inFlight
      } else if (now - this.lastAttemptAt >= this.options.cooldownMs) {
        await this.refresh(calls)
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

  private refresh(calls?: CallObserver): Promise<boolean> {
    this.inFlight ??= this.fetchKeys(calls).finally(() => {
      this.inFlight = undefined
    })
    return this.inFlight
  }

  private async fetchKeys(calls: CallObserver | undefined): Promise<boolean> {
    this.lastAttemptAt = this.now()
    try {
      const url = typeof this.url === 'string' ? this.url : await this.url()
      const { keys, rejected } = vetKeys(publicSigningKeys(await fetchJwks(url, this.options.timeoutMs, calls)), this.options.algorithms)
      // An empty or wholly unusable set is a failed fetch: it never replaces keys that work.
      if (keys.length === 0) throw new Error(`the key set has no usable key${rejected.length ? ` (${rejected.length} left out)` : ''}`)
      const json = JSON.stringify(keys)
      if (json !== this.localJson) {
        this.local = createLocalJWKSet({ keys })
        this.localJson = json
        this.rejected = new Map(rejected.filter((r) => r.kid !== undefined).map((r) => [r.kid!, r.reason]))
        this.version++
        if (rejected.length > 0) this.options.onRejectedKeys?.(rejected)
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

async function fetchJwks(url: string, timeoutMs: number, calls: CallObserver | undefined): Promise<unknown> {
  const call = callStarted('jwks', 'GET', url, calls)
  try {
    const res = await dependencyCall(url, {
      method: 'GET',
      headers: withCallHeaders({ accept: 'application/jwk-set+json, application/json' }, call),
      timeoutMs,
      maxBytes: MAX_JWKS_BYTES,
    })
    if (res.status !== 200) throw Object.assign(new Error(`JWKS endpoint answered ${res.status}`), { status: res.status })
    const text = res.text
    const doc = JSON.parse(text) as unknown
    call?.end(200)
    return doc
  } catch (err) {
    call?.end((err as { status?: number }).status, err)
    throw err
  }
}

/** A key of a set that is left out, and why. */
export interface RejectedKey {
  readonly kid: string | undefined
  readonly reason: 'too_weak' | 'unusable' | 'no_allowed_algorithm'
}

/** The algorithms a key can verify, by its type and curve. */
function algorithmsOf(jwk: JWK): readonly string[] {
  switch (jwk.kty) {
    case 'RSA':
      return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']
    case 'EC':
      return jwk.crv === 'P-256' ? ['ES256'] : jwk.crv === 'P-384' ? ['ES384'] : jwk.crv === 'P-521' ? ['ES512'] : []
    case 'OKP':
      return jwk.crv === 'Ed25519' ? ['EdDSA', 'Ed25519'] : jwk.crv === 'Ed448' ? ['EdDSA'] : []
    default:
      return []
  }
}

/** Least RSA modulus accepted (RFC 8725 §3.5, NIST SP 800-131A). */
export const MIN_RSA_BITS = 2048

/**
 * Splits public signing keys into those that can verify tokens of the
 * allowed algorithms and those left out: keys that do not import (a point
 * off its curve, a malformed modulus), RSA keys under 2048 bits, and keys
 * for no allowed algorithm. Left-out keys never reach verification, so an
 * odd key is a refusal of its tokens (401), never a failure of the gateway.
 */
export function vetKeys(set: JSONWebKeySet, allowed: readonly string[]): { keys: JWK[]; rejected: RejectedKey[] } {
  const keys: JWK[] = []
  const rejected: RejectedKey[] = []
  for (const jwk of set.keys) {
    const kid = typeof jwk.kid === 'string' ? jwk.kid : undefined
    const algs = algorithmsOf(jwk).filter((a) => allowed.includes(a) && (jwk.alg === undefined || jwk.alg === a))
    if (algs.length === 0) {
      rejected.push({ kid, reason: 'no_allowed_algorithm' })
      continue
    }
    try {
      const key = createPublicKey({ key: jwk as JWK & { kty: string }, format: 'jwk' })
      if (jwk.kty === 'RSA' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) {
        rejected.push({ kid, reason: 'too_weak' })
        continue
      }
    } catch {
      rejected.push({ kid, reason: 'unusable' })
      continue
    }
    keys.push(jwk)
  }
  return { keys, rejected }
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

