import { createHash } from 'node:crypto'
import { GatewayError } from '../../errors.js'
import type { BucketStore, LocalBuckets, Taken } from '../../cache/rate-limit-store.js'
import { readClaim, type ClaimPath } from '../authn/claim-path.js'
import type { Principal } from '../authn/principal.js'
import type { CallObserver } from '../../observe/calls.js'

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
/** Bound of the leases and of the empty buckets remembered (each lives a second or so). */
const MAX_REMEMBERED = 10_000
/** Most requests one script call takes for waiting requests. */
const MAX_WANT = 1000

/** Requests of this process a batch still covers. */
interface Lease {
  left: number
  remaining: number
  untilFullUs: number
  takenAt: number
  expiresAt: number
}

type Outcome = Taken | 'unavailable' | undefined
type Waiter = (taken: Taken | undefined) => void

/** One script call in flight for a bucket, and the requests that came while it was. */
interface Flight {
  readonly next: Waiter[]
}

/**
 * The rate-limit stage. Buckets live in Redis when it is configured (shared
 * by every replica, exact: one atomic script per decision, or one per
 * `batch` requests), else in this process (each process enforcing its share,
 * the limit divided by `processes`). When Redis does not answer, each
 * limit's `on_redis_error` decides: allow, deny (503), or local (this
 * process's share, counted here).
 *
 * Concurrent decisions on one bucket share a call: while one is in flight,
 * the requests that come wait, and the next call takes as many as they are
 * (Redis grants what the bucket holds, each gets one or a refusal). Exact,
 * and a busy client costs one round trip per burst of its requests, not one
 * per request.
 */
export class RateLimiter {
  private readonly leases = new Map<string, Lease>()
  /** Buckets Redis said are empty, until it said one request comes back: refused here without asking again. */
  private readonly empty = new Map<string, { taken: Taken; at: number; until: number }>()
  private readonly flights = new Map<string, Flight>()
  /** Keys by identity, per principal (a cached token's principal is one object): no digest per request. */
  private readonly keys = new WeakMap<Principal, Map<RateLimitRule, string>>()

  constructor(
    private readonly shared: BucketStore | undefined,
    private readonly local: LocalBuckets,
    private readonly observer: RateLimitObserver | undefined,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Takes one request from each limit's bucket; throws `rate_limited` (429,
   * Retry-After) when one is empty, `rate_limit_unavailable` (503) when Redis
   * is away and the limit says deny. Header members are added to `headers`.
   * Synchronous (undefined) when every bucket answered here: no await.
   */
  check(
    routeId: string,
    rules: readonly RateLimitRule[],
    who: { readonly ip: string; readonly principal: Principal | undefined },
    headers: RateLimitHeaders | undefined,
    calls?: CallObserver,
  ): Promise<void> | undefined {
    const outcomes: Outcome[] = new Array(rules.length)
    let pending: Promise<void>[] | undefined
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i]!
      const got = this.take(routeId, rule, this.keyOf(rule, who), calls)
      if (got instanceof Promise) (pending ??= []).push(got.then((o) => void (outcomes[i] = o)))
      else outcomes[i] = got
    }
    if (pending !== undefined) return Promise.all(pending).then(() => this.decide(routeId, rules, outcomes, headers))
    this.decide(routeId, rules, outcomes, headers)
    return undefined
  }

  private keyOf(rule: RateLimitRule, who: { readonly ip: string; readonly principal: Principal | undefined }): string {
    const p = who.principal
    if (p === undefined || rule.by.some((b) => b.kind === 'ip')) return bucketKey(rule, who)
    let byRule = this.keys.get(p)
    if (byRule === undefined) this.keys.set(p, (byRule = new Map()))
    let key = byRule.get(rule)
    if (key === undefined) byRule.set(rule, (key = bucketKey(rule, who)))
    return key
  }

  private decide(routeId: string, rules: readonly RateLimitRule[], outcomes: readonly Outcome[], headers: RateLimitHeaders | undefined): void {
    let refused: { rule: RateLimitRule; taken: Taken } | undefined
    for (let i = 0; i < rules.length; i++) {
      const rule = rules[i]!
      const t = outcomes[i]
      if (t === undefined) continue // allowed by on_redis_error: allow; nothing to tell
      if (t === 'unavailable') {
        this.observer?.rateLimitDecided(routeId, rule.id, 'unavailable')
        throw new GatewayError('rate_limit_unavailable', 'the rate limit of this request cannot be checked now', { retryAfter: 1, limit: rule.id })
      }
      this.observer?.rateLimitDecided(routeId, rule.id, t.granted > 0 ? 'allowed' : 'limited')
      if (headers !== undefined) {
        headers.policy.push(rule.policy)
        headers.current.push(`"${rule.id}";r=${t.remaining};t=${Math.ceil(t.untilFullUs / 1e6)}`)
      }
      if (t.granted === 0 && (refused === undefined || t.retryAfterUs > refused.taken.retryAfterUs)) refused = { rule, taken: t }
    }
    if (refused !== undefined) {
      throw new GatewayError('rate_limited', `rate limit "${refused.rule.id}" reached; retry later`, { retryAfter: Math.max(1, Math.ceil(refused.taken.retryAfterUs / 1e6)), limit: refused.rule.id })
    }
  }

  /** One limit's take: undefined when allowed without counting (Redis away, on_redis_error: allow). */
  private take(routeId: string, rule: RateLimitRule, key: string, calls: CallObserver | undefined): Outcome | Promise<Outcome> {
    if (this.shared === undefined) return this.takeLocal(rule, key)
    const now = this.now()
    // Only time refills a bucket: until then Redis would refuse again, so this process does (a client hammering an empty bucket costs no round trip).
    const empty = this.empty.get(key)
    if (empty !== undefined) {
      if (empty.until > now) {
        const elapsedUs = (now - empty.at) * 1000
        return { granted: 0, remaining: 0, untilFullUs: Math.max(0, empty.taken.untilFullUs - elapsedUs), retryAfterUs: Math.max(1, empty.taken.retryAfterUs - elapsedUs) }
      }
      this.empty.delete(key)
    }
    if (rule.batch > 1) {
      const lease = this.leases.get(key)
      if (lease !== undefined) {
        if (lease.left > 0 && lease.expiresAt > now) {
          lease.left--
          return { granted: 1, remaining: lease.remaining + lease.left, untilFullUs: Math.max(0, lease.untilFullUs - (now - lease.takenAt) * 1000), retryAfterUs: 0 }
        }
        this.leases.delete(key)
      }
    }
    return this.takeShared(rule, key, calls).then((taken) => {
      if (taken !== undefined) {
        if (taken.granted === 0 && taken.retryAfterUs >= 1000) remember(this.empty, key, { taken, at: this.now(), until: this.now() + Math.floor(taken.retryAfterUs / 1000) })
        return taken
      }
      this.observer?.rateLimitStoreFailed(routeId, rule.id, rule.onRedisError)
      if (rule.onRedisError === 'allow') return undefined
      if (rule.onRedisError === 'deny') return 'unavailable'
      return this.takeLocal(rule, key)
    })
  }

  private takeLocal(rule: RateLimitRule, key: string): Taken {
    return this.local.take(key, rule.emissionUs * rule.processes, Math.max(1, Math.floor(rule.burst / rule.processes)), 1)
  }

  /** A request's take from Redis, sharing a call with the others on the bucket. */
  private takeShared(rule: RateLimitRule, key: string, calls: CallObserver | undefined): Promise<Taken | undefined> {
    return new Promise((resolve) => {
      const flight = this.flights.get(key)
      if (flight !== undefined) flight.next.push(resolve)
      else this.fly(rule, key, [resolve], calls)
    })
  }

  /**
   * One call for the waiting requests (batched: at least `batch`, the rest
   * kept as this process's lease for LEASE_MS); whoever came meanwhile goes
   * on the next call.
   */
  private fly(rule: RateLimitRule, key: string, waiters: Waiter[], calls: CallObserver | undefined): void {
    const flight: Flight = { next: [] }
    this.flights.set(key, flight)
    const want = Math.min(Math.max(waiters.length, rule.batch), MAX_WANT)
    const started = performance.now()
    const done = (taken: Taken | undefined) => {
      if (taken !== undefined) this.observer?.rateLimitStoreSeconds((performance.now() - started) / 1000)
      const served = share(taken, waiters, rule)
      if (taken !== undefined && taken.granted > served) {
        const now = this.now()
        remember(this.leases, key, { left: taken.granted - served, remaining: taken.remaining, untilFullUs: taken.untilFullUs, takenAt: now, expiresAt: now + LEASE_MS })
      }
      const next = flight.next
      if (next.length === 0) {
        this.flights.delete(key)
        return
      }
      // Those that came meanwhile: from the new lease first, the rest on another call.
      const lease = this.leases.get(key)
      while (lease !== undefined && lease.left > 0 && next.length > 0) {
        lease.left--
        next.shift()!({ granted: 1, remaining: lease.remaining + lease.left, untilFullUs: lease.untilFullUs, retryAfterUs: 0 })
      }
      if (next.length === 0) this.flights.delete(key)
      else this.fly(rule, key, next.splice(0, MAX_WANT), undefined)
      if (next.length > 0) for (const w of next) this.takeShared(rule, key, undefined).then(w)
    }
    // The call is the first waiting request's (its trace shows it); the others shared it.
    const answer = this.shared!.take(key, rule.emissionUs, rule.burst, want, calls)
    if (answer instanceof Promise) answer.then(done, () => done(undefined))
    else done(answer)
  }
}

/** Hands one call's answer out: the first `granted` waiters get one each, the rest a refusal. Returns how many were served. */
function share(taken: Taken | undefined, waiters: readonly Waiter[], rule: RateLimitRule): number {
  if (taken === undefined) {
    for (const w of waiters) w(undefined)
    return 0
  }
  const served = Math.min(taken.granted, waiters.length)
  const left = taken.granted - served
  // Once a call granted fewer than it asked for, one request comes back when the bucket has room for one.
  const retryAfterUs = taken.granted > 0 ? Math.max(1, taken.untilFullUs - (rule.burst - 1) * rule.emissionUs) : taken.retryAfterUs
  for (let i = 0; i < waiters.length; i++) {
    if (i < served) waiters[i]!({ granted: 1, remaining: taken.remaining + left + (served - 1 - i), untilFullUs: taken.untilFullUs, retryAfterUs: 0 })
    else waiters[i]!({ granted: 0, remaining: 0, untilFullUs: taken.untilFullUs, retryAfterUs })
  }
  return served
}

/** Sets a short-lived entry in a bounded map (the oldest goes first). */
function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key)
  map.set(key, value)
  if (map.size > MAX_REMEMBERED) map.delete(map.keys().next().value!)
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
