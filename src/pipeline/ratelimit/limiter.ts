import { createHash } from 'node:crypto'
import { GatewayError } from '../../errors.js'
import { ExpiringLru } from '../../cache/lru.js'
import type { BucketStore, LocalBuckets, Taken } from '../../cache/rate-limit-store.js'
import { readClaim, type ClaimPath } from '../authn/claim-path.js'
import type { Principal } from '../authn/principal.js'

/** What a limit counts by: a part of the bucket key. */
export type KeyPart = { readonly kind: 'client_id' } | { readonly kind: 'sub' } | { readonly kind: 'ip' } | { readonly kind: 'claim'; readonly path: ClaimPath; readonly name: string }

export type OnRedisError = 'allow' | 'deny' | 'local'

/** One limit, compiled: `requests` per `per` with a `burst`, keyed by `by`. */
export interface RateLimitRule {
  readonly id: string
  /** Whose counters: `route:<id>` for a route's own limit, `default` for a default limit (one bucket per key across the routes it covers). */
  readonly scope: string
  readonly requests: number
  readonly perSeconds: number
  readonly burst: number
  /** Microseconds between two requests on average (per / requests). */
  readonly emissionUs: number
  readonly by: readonly KeyPart[]
  readonly onRedisError: OnRedisError
  /** Requests a replica takes from Redis at once and serves itself (1: every decision in Redis). */
  readonly batch: number
  /** The share of one process when counters are not shared: the limit divided by this. */
  readonly processes: number
  /** This limit's member of RateLimit-Policy, e.g. `"per-client";q=100;w=60`. */
  readonly policy: string
}

/** A route's limits: by address (before the token is verified) and by identity (after it is authorized). */
export interface RouteRateLimits {
  readonly byAddress: readonly RateLimitRule[]
  readonly byIdentity: readonly RateLimitRule[]
  /** Whether answers carry RateLimit-Policy and RateLimit. */
  readonly headers: boolean
}

export type RateLimitDecision = 'allowed' | 'limited' | 'unavailable'

/** What the limiter reports (the metrics are one implementation). */
export interface RateLimitObserver {
  rateLimitDecided(route: string, limit: string, decision: RateLimitDecision): void
  /** A shared-store call's duration. */
  rateLimitStoreSeconds(seconds: number): void
  /** The shared store could not answer; the limit's on_redis_error applied. */
  rateLimitStoreFailed(route: string, limit: string, mode: OnRedisError): void
}

/** The RateLimit-Policy and RateLimit members of a request's answer. */
export interface RateLimitHeaders {
  policy: string[]
  current: string[]
}

/** A replica serves requests taken in a batch for at most this long, then drops what is left. */
export const LEASE_MS = 1000

interface Lease {
  left: number
  remaining: number
  untilFullUs: number
  takenAt: number
}

/**
 * The rate-limit stage. Buckets live in Redis when it is configured (shared
 * by every replica, exact: one atomic script per decision, or one per
 * `batch` requests), else in this process (each process enforcing its share,
 * the limit divided by `processes`). When Redis does not answer, each
 * limit's `on_redis_error` decides: allow, deny (503), or local (this
 * process's share, counted here).
 */
export class RateLimiter {
  private readonly leases: ExpiringLru<Lease>
  /** Buckets Redis said are empty, until it said one request comes back: refused here without asking again. */
  private readonly empty: ExpiringLru<{ taken: Taken; at: number }>
  private readonly fetching = new Map<string, Promise<Taken | undefined>>()

  constructor(
    private readonly shared: BucketStore | undefined,
    private readonly local: LocalBuckets,
    private readonly observer: RateLimitObserver | undefined,
    private readonly now: () => number = Date.now,
  ) {
    this.leases = new ExpiringLru<Lease>(10_000, now)
    this.empty = new ExpiringLru(10_000, now)
  }

  /**
   * Takes one request from each limit's bucket; throws `rate_limited` (429,
   * Retry-After) when one is empty, `rate_limit_unavailable` (503) when Redis
   * is away and the limit says deny. Header members are added to `headers`.
   */
  async check(routeId: string, rules: readonly RateLimitRule[], who: { readonly ip: string; readonly principal: Principal | undefined }, headers: RateLimitHeaders | undefined): Promise<void> {
    const taken = await Promise.all(rules.map((rule) => this.take(routeId, rule, bucketKey(rule, who))))
    let refused: { rule: RateLimitRule; taken: Taken } | undefined
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i]!
      const t = taken[i]
      if (t === undefined) continue // allowed by on_redis_error: allow; nothing to tell
      if (t === 'unavailable') {
        this.observer?.rateLimitDecided(routeId, rule.id, 'unavailable')
        throw new GatewayError('rate_limit_unavailable', 'the rate limit of this request cannot be checked now', { retryAfter: 1 })
      }
      this.observer?.rateLimitDecided(routeId, rule.id, t.granted > 0 ? 'allowed' : 'limited')
      if (headers !== undefined) {
        headers.policy.push(rule.policy)
        headers.current.push(`"${rule.id}";r=${t.remaining};t=${Math.ceil(t.untilFullUs / 1e6)}`)
      }
      if (t.granted === 0 && (refused === undefined || t.retryAfterUs > refused.taken.retryAfterUs)) refused = { rule, taken: t }
    }
    if (refused !== undefined) {
      throw new GatewayError('rate_limited', `rate limit "${refused.rule.id}" reached; retry later`, { retryAfter: Math.max(1, Math.ceil(refused.taken.retryAfterUs / 1e6)) })
    }
  }

  /** One limit's take: undefined when allowed without counting (Redis away, on_redis_error: allow). */
  private async take(routeId: string, rule: RateLimitRule, key: string): Promise<Taken | 'unavailable' | undefined> {
    if (this.shared === undefined) return this.local.take(key, rule.emissionUs * rule.processes, Math.max(1, Math.floor(rule.burst / rule.processes)), 1)
    // Only time refills a bucket: until then Redis would refuse again, so this process does (a client hammering an empty bucket costs no round trip).
    const empty = this.empty.get(key)
    if (empty !== undefined) {
      const elapsedUs = (this.now() - empty.at) * 1000
      return { granted: 0, remaining: 0, untilFullUs: Math.max(0, empty.taken.untilFullUs - elapsedUs), retryAfterUs: Math.max(1, empty.taken.retryAfterUs - elapsedUs) }
    }
    const taken = rule.batch > 1 ? await this.fromLease(rule, key) : await this.timed(key, rule, 1)
    if (taken !== undefined) {
      if (taken.granted === 0 && taken.retryAfterUs >= 1000) {
        const at = this.now()
        this.empty.set(key, { taken, at }, at + Math.floor(taken.retryAfterUs / 1000))
      }
      return taken
    }
    this.observer?.rateLimitStoreFailed(routeId, rule.id, rule.onRedisError)
    if (rule.onRedisError === 'allow') return undefined
    if (rule.onRedisError === 'deny') return 'unavailable'
    return this.local.take(key, rule.emissionUs * rule.processes, Math.max(1, Math.floor(rule.burst / rule.processes)), 1)
  }

  private async timed(key: string, rule: RateLimitRule, want: number): Promise<Taken | undefined> {
    const started = performance.now()
    const taken = await this.shared!.take(key, rule.emissionUs, rule.burst, want)
    if (taken !== undefined) this.observer?.rateLimitStoreSeconds((performance.now() - started) / 1000)
    return taken
  }

  /**
   * Batched: a replica takes up to `batch` requests from Redis at once and
   * serves them itself for at most LEASE_MS; what is left then is dropped.
   * Concurrent requests for one key share one call.
   */
  private async fromLease(rule: RateLimitRule, key: string): Promise<Taken | undefined> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const now = this.now()
      const lease = this.leases.get(key)
      if (lease !== undefined && lease.left > 0) {
        lease.left--
        return { granted: 1, remaining: lease.remaining + lease.left, untilFullUs: Math.max(0, lease.untilFullUs - (now - lease.takenAt) * 1000), retryAfterUs: 0 }
      }
      let pending = this.fetching.get(key)
      if (pending === undefined) {
        pending = this.timed(key, rule, rule.batch).finally(() => this.fetching.delete(key))
        this.fetching.set(key, pending)
        const taken = await pending
        if (taken === undefined || taken.granted === 0) return taken
        this.leases.set(key, { left: taken.granted - 1, remaining: taken.remaining, untilFullUs: taken.untilFullUs, takenAt: now }, now + LEASE_MS)
        return { ...taken, granted: 1, remaining: taken.remaining + taken.granted - 1 }
      }
      const taken = await pending
      if (taken === undefined || taken.granted === 0) return taken
      // Another request's call filled the lease: take from it.
    }
    return this.timed(key, rule, 1)
  }
}

/**
 * The bucket's key: whose counters, which limit, and a digest of the values
 * it counts by (no client data in Redis key names). Each value is written
 * with its length, so no choice of claim values makes two keys meet.
 */
export function bucketKey(rule: RateLimitRule, who: { readonly ip: string; readonly principal: Principal | undefined }): string {
  const hash = createHash('sha256')
  const put = (value: string) => hash.update(`${value.length}:${value}`)
  put(rule.scope)
  put(rule.id)
  const p = who.principal
  for (const part of rule.by) {
    if (part.kind === 'ip') {
      put('ip')
      put(who.ip)
      continue
    }
    // Identities are per issuer: the same client id from two issuers is two clients.
    put(part.kind)
    put(p?.issuerId ?? '')
    const v = p === undefined ? undefined : part.kind === 'client_id' ? p.clientId : part.kind === 'sub' ? p.subject : readClaim(p.claims, part.path)
    if (v === undefined) put('-')
    else if (typeof v === 'string') put('s' + v)
    else put('j' + JSON.stringify(v))
  }
  return `rl:{${hash.digest('base64url').slice(0, 27)}}`
}

/** The answer's RateLimit-Policy and RateLimit headers, when any limit was counted. */
export function rateLimitHeaders(h: RateLimitHeaders | undefined): Record<string, string> | undefined {
  if (h === undefined || h.policy.length === 0) return undefined
  return { 'ratelimit-policy': h.policy.join(', '), ratelimit: h.current.join(', ') }
}
