import { Type, type Static } from '@sinclair/typebox'
import { parseClaimPath } from '../pipeline/authn/claim-path.js'
import type { KeyPart, RateLimitRule, RouteRateLimits } from '../pipeline/ratelimit/limiter.js'
import { parseDuration } from './duration.js'
import type { FieldPath } from './errors.js'

/**
 * `rate_limits` (global: defaults, how many processes share the traffic,
 * headers) and a route's `rate_limits` (its own limits, or false for none).
 * Schema and compile step side by side; the stage is src/pipeline/ratelimit/.
 */

const strict = { additionalProperties: false } as const

export const RATE_LIMIT_DEFAULTS = {
  onRedisError: 'local',
  headers: true,
  maxBuckets: 100_000,
} as const

/** At most this many requests per second per limit (one emission interval is at least 1 µs). */
const MAX_RATE_PER_SECOND = 1_000_000

export const RateLimitSchema = Type.Object(
  {
    id: Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,63}$', description: 'names the limit in RateLimit headers, metrics and logs' }),
    requests: Type.Integer({ minimum: 1, maximum: 1_000_000_000, description: 'requests allowed per `per`, on average' }),
    per: Type.String({ pattern: '^[0-9]+(ms|s|m|h)$', description: 'the period (at least 1s, at most 24h)' }),
    burst: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000_000, description: 'requests allowed at once (default: requests); the bucket refills at requests per per' })),
    by: Type.Array(
      Type.String({ pattern: '^(client_id|sub|ip|claim:.+)$', description: 'client_id, sub, ip (the client address after trusted proxies) or claim:<path> ("claim:tenant", "claim:org.id")' }),
      { minItems: 1, uniqueItems: true, description: 'what the limit counts by: one bucket per distinct combination. A limit by ip alone runs before the token is verified; any other after the request is authorized' },
    ),
    on_redis_error: Type.Optional(
      Type.Union([Type.Literal('allow'), Type.Literal('deny'), Type.Literal('local')], {
        default: RATE_LIMIT_DEFAULTS.onRedisError,
        description: 'when Redis does not answer: allow (uncounted), deny (503), or local (this process enforces its share: the limit divided by rate_limits.replicas_hint)',
      }),
    ),
    batch: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 1000,
        default: 1,
        description: 'requests a replica takes from Redis at once and serves itself for at most 1s (1: every decision in Redis); each replica may then admit up to batch - 1 more than the limit, and leave as many unused',
      }),
    ),
  },
  { ...strict, description: 'one limit: `requests` per `per` with a `burst`, counted by `by`' },
)

export const RateLimitsSchema = Type.Object(
  {
    default: Type.Optional(Type.Array(RateLimitSchema, { description: 'limits of routes that name none; their buckets are shared by those routes (one bucket per key, not per route). Limits by identity apply on protected routes only' })),
    replicas_hint: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 100_000,
        description: 'how many gateway processes share the traffic (replicas × server.workers; default: server.workers): without Redis, or while it is away with on_redis_error: local, each process enforces the limit divided by this',
      }),
    ),
    headers: Type.Optional(Type.Boolean({ default: RATE_LIMIT_DEFAULTS.headers, description: 'answers carry RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers); a route may say otherwise' })),
    max_buckets: Type.Optional(Type.Integer({ minimum: 100, maximum: 10_000_000, default: RATE_LIMIT_DEFAULTS.maxBuckets, description: 'bound of the buckets this process keeps itself (without Redis, or while it is away)' })),
  },
  { ...strict, description: 'rate limits: per client, subject, claim or address; exact across replicas with Redis' },
)

export const RouteRateLimitsSchema = Type.Union([Type.Array(RateLimitSchema), Type.Literal(false)], {
  description: "this route's own limits (replacing the defaults; their buckets are this route's), or false for none",
})

export type RateLimitConfig = Static<typeof RateLimitSchema>
export type RateLimitsConfig = Static<typeof RateLimitsSchema>

type Report = (path: FieldPath, message: string) => void

export interface CompiledRateLimits {
  /** The defaults, compiled once (their buckets are shared by the routes they cover). */
  readonly defaults: readonly RateLimitRule[]
  readonly headers: boolean
  readonly processes: number
  readonly maxBuckets: number
}

function compileRule(c: RateLimitConfig, scope: string, processes: number, at: FieldPath, report: Report): RateLimitRule | undefined {
  let ok = true
  const fail = (path: FieldPath, message: string) => {
    ok = false
    report(path, message)
  }
  const perMs = parseDuration(c.per)
  if (perMs < 1000 || perMs > 86_400_000) fail([...at, 'per'], `a period from 1s to 24h (got ${c.per})`)
  if (c.requests / (perMs / 1000) > MAX_RATE_PER_SECOND) fail([...at, 'requests'], `at most ${MAX_RATE_PER_SECOND} requests per second`)
  const burst = c.burst ?? c.requests
  const batch = c.batch ?? 1
  if (batch > burst) fail([...at, 'batch'], `a batch (${batch}) larger than the burst (${burst}) could never be taken at once`)
  const by: KeyPart[] = []
  c.by.forEach((text, i) => {
    if (text === 'client_id' || text === 'sub' || text === 'ip') by.push({ kind: text })
    else {
      const name = text.slice('claim:'.length)
      const path = parseClaimPath(name)
      if (path === undefined) fail([...at, 'by', i], `"${name}" is not a claim path (dotted names; a name holding dots in double quotes)`)
      else by.push({ kind: 'claim', path, name })
    }
  })
  if (!ok) return undefined
  return Object.freeze({
    id: c.id,
    scope,
    requests: c.requests,
    perSeconds: Math.max(1, Math.round(perMs / 1000)),
    burst,
    emissionUs: Math.max(1, Math.round((perMs * 1000) / c.requests)),
    by: Object.freeze(by),
    onRedisError: c.on_redis_error ?? RATE_LIMIT_DEFAULTS.onRedisError,
    batch,
    processes,
    policy: `"${c.id}";q=${c.requests};w=${Math.max(1, Math.round(perMs / 1000))}`,
  })
}

function compileList(list: readonly RateLimitConfig[], scope: string, processes: number, at: FieldPath, report: Report): RateLimitRule[] {
  const seen = new Map<string, number>()
  const out: RateLimitRule[] = []
  list.forEach((c, i) => {
    if (seen.has(c.id)) report([...at, i, 'id'], `duplicate limit id "${c.id}" (also [${seen.get(c.id)}])`)
    seen.set(c.id, i)
    const rule = compileRule(c, scope, processes, [...at, i], report)
    if (rule) out.push(rule)
  })
  return out
}

export function compileRateLimits(config: RateLimitsConfig | undefined, workers: number, report: Report): CompiledRateLimits {
  const processes = config?.replicas_hint ?? workers
  return {
    defaults: compileList(config?.default ?? [], 'default', processes, ['rate_limits', 'default'], report),
    headers: config?.headers ?? RATE_LIMIT_DEFAULTS.headers,
    processes,
    maxBuckets: config?.max_buckets ?? RATE_LIMIT_DEFAULTS.maxBuckets,
  }
}

const byAddressOnly = (r: RateLimitRule) => r.by.every((p) => p.kind === 'ip')

/**
 * A route's limits: its own (counted per route), none (false), or the
 * defaults (counted across the routes they cover). On a public route a limit
 * by identity has nothing to count: its own is an error, a default one is
 * left out.
 */
export function compileRouteRateLimits(
  global: CompiledRateLimits,
  own: readonly RateLimitConfig[] | false | undefined,
  headers: boolean | undefined,
  route: { readonly id: string; readonly isProtected: boolean },
  at: FieldPath,
  report: Report,
): RouteRateLimits | undefined {
  let rules: readonly RateLimitRule[]
  if (own === false) rules = []
  else if (own === undefined) rules = route.isProtected ? global.defaults : global.defaults.filter(byAddressOnly)
  else {
    rules = compileList(own, `route:${route.id}`, global.processes, [...at, 'rate_limits'], report)
    if (!route.isProtected) {
      own.forEach((c, i) => {
        if (!c.by.every((p) => p === 'ip')) report([...at, 'rate_limits', i, 'by'], 'a public route has no identity to count by: only ip')
      })
    }
  }
  if (rules.length === 0) return undefined
  return Object.freeze({
    byAddress: Object.freeze(rules.filter(byAddressOnly)),
    byIdentity: Object.freeze(rules.filter((r) => !byAddressOnly(r))),
    headers: headers ?? global.headers,
  })
}

/** Top-level claim names rate limits read (cached principals keep them). */
export function rateLimitClaimNames(global: RateLimitsConfig | undefined, routeLimits: readonly (readonly RateLimitConfig[] | false | undefined)[]): string[] {
  const out = new Set<string>()
  for (const list of [global?.default, ...routeLimits]) {
    if (!list) continue
    for (const c of list) for (const by of c.by) if (by.startsWith('claim:')) {
      const path = parseClaimPath(by.slice('claim:'.length))
      if (path) out.add(path[0]!)
    }
  }
  return [...out]
}
