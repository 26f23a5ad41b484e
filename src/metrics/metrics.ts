import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { CacheSource, CacheTier } from '../cache/tiered-cache.js'

/** Label values are from fixed sets only: never raw paths, tokens or client ids. */
export type AuthMethod = 'jwt' | 'introspection'
export type AuthCache = CacheSource | 'none'

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
const UPSTREAM_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/** What the pipeline and its caches report; the metrics are one implementation. */
export interface Observer {
  jwksFetch(issuer: string, outcome: 'success' | 'failure'): void
  introspection(issuer: string, outcome: 'active' | 'inactive' | 'error'): void
  cacheLookup(tier: CacheTier, hit: boolean): void
  redisUp(up: boolean): void
}

/**
 * Memoises labelled children: prom-client hashes the label values on every
 * `labels()` call, which the per-request metrics would pay each time. Label
 * values come from fixed sets (route ids, reason codes), so the map is bounded.
 */
function memo<T>(make: (...labels: string[]) => T): (...labels: string[]) => T {
  const children = new Map<string, T>()
  return (...labels) => {
    const key = labels.join('\u0000')
    let child = children.get(key)
    if (child === undefined) children.set(key, (child = make(...labels)))
    return child
  }
}

/** The gateway's metrics, in a registry of their own. */
export class Metrics implements Observer {
  readonly registry = new Registry()
  readonly requests: Counter<'route' | 'method' | 'status_class'>
  readonly decisions: Counter<'route' | 'result' | 'reason'>
  readonly authDuration: Histogram<'method' | 'cache'>
  readonly upstreamDuration: Histogram<'route' | 'upstream'>
  readonly introspections: Counter<'issuer' | 'outcome'>
  readonly cacheLookups: Counter<'tier' | 'result'>
  readonly jwksFetches: Counter<'issuer' | 'outcome'>
  readonly reloads: Counter<'outcome'>
  readonly lastReload: Gauge
  readonly redis: Gauge

  constructor(options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry]
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry })
    this.requests = new Counter({
      name: 'gateway_requests_total',
      help: 'Requests answered, by route id ("none" when no route matched), method and status class.',
      labelNames: ['route', 'method', 'status_class'],
      registers,
    })
    this.decisions = new Counter({
      name: 'gateway_auth_decisions_total',
      help: 'Authorization decisions on protected routes, by route, result (allow, deny) and reason code ("ok" when allowed).',
      labelNames: ['route', 'result', 'reason'],
      registers,
    })
    this.authDuration = new Histogram({
      name: 'gateway_auth_duration_seconds',
      help: 'Time to authenticate and authorize a token, by method (jwt, introspection) and cache outcome (memory, shared, origin, none).',
      labelNames: ['method', 'cache'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.upstreamDuration = new Histogram({
      name: 'gateway_upstream_duration_seconds',
      help: 'Time from forwarding a request to the end of the upstream response, by route and upstream.',
      labelNames: ['route', 'upstream'],
      buckets: UPSTREAM_BUCKETS,
      registers,
    })
    this.introspections = new Counter({
      name: 'gateway_introspection_requests_total',
      help: 'Calls to introspection endpoints, by issuer and outcome (active, inactive, error).',
      labelNames: ['issuer', 'outcome'],
      registers,
    })
    this.cacheLookups = new Counter({
      name: 'gateway_token_cache_lookups_total',
      help: 'Token cache lookups, by tier (memory, shared) and result (hit, miss).',
      labelNames: ['tier', 'result'],
      registers,
    })
    this.jwksFetches = new Counter({
      name: 'gateway_jwks_fetches_total',
      help: 'JWKS fetches, by issuer and outcome (success, failure).',
      labelNames: ['issuer', 'outcome'],
      registers,
    })
    this.reloads = new Counter({
      name: 'gateway_config_reloads_total',
      help: 'Configuration reloads, by outcome (success, failure).',
      labelNames: ['outcome'],
      registers,
    })
    // With several workers the primary aggregates: the oldest configuration, and Redis up only if up everywhere.
    this.lastReload = new Gauge({
      name: 'gateway_config_last_reload_success_timestamp_seconds',
      help: 'When the configuration in force was loaded (Unix time).',
      aggregator: 'min',
      registers,
    })
    this.redis = new Gauge({
      name: 'gateway_redis_up',
      help: '1 while the shared Redis cache answers, 0 while the gateway runs without it; absent when no Redis is configured.',
      aggregator: 'min',
      registers,
    })
    this.lastReload.setToCurrentTime()
    for (const c of STATUS_CLASSES) for (const m of KNOWN_METHODS) this.requests.labels('none', m, c).inc(0)
  }

  private readonly requestChild = memo((route, method, cls) => this.requests.labels(route!, method!, cls!))
  private readonly decisionChild = memo((route, result, reason) => this.decisions.labels(route!, result!, reason!))
  private readonly authChild = memo((method, cache) => this.authDuration.labels(method!, cache!))
  private readonly upstreamChild = memo((route, upstream) => this.upstreamDuration.labels(route!, upstream!))

  /** The per-request metrics, recorded once its response is over. */
  request(route: string | undefined, method: string, status: number): void {
    const cls = STATUS_CLASSES[Math.min(Math.max(Math.floor(status / 100), 1), 5) - 1]!
    this.requestChild(route ?? 'none', KNOWN_METHODS.has(method) ? method : 'OTHER', cls).inc()
  }

  decision(route: string | undefined, result: 'allow' | 'deny', reason: string): void {
    this.decisionChild(route ?? 'none', result, reason).inc()
  }

  auth(method: string, cache: string, seconds: number): void {
    this.authChild(method, cache).observe(seconds)
  }

  upstream(route: string, upstream: string, seconds: number): void {
    this.upstreamChild(route, upstream).observe(seconds)
  }

  jwksFetch(issuer: string, outcome: 'success' | 'failure'): void {
    this.jwksFetches.labels(issuer, outcome).inc()
  }

  introspection(issuer: string, outcome: 'active' | 'inactive' | 'error'): void {
    this.introspections.labels(issuer, outcome).inc()
  }

  cacheLookup(tier: CacheTier, hit: boolean): void {
    this.cacheLookups.labels(tier, hit ? 'hit' : 'miss').inc()
  }

  redisUp(up: boolean): void {
    this.redis.set(up ? 1 : 0)
  }

  reload(outcome: 'success' | 'failure'): void {
    this.reloads.labels(outcome).inc()
    if (outcome === 'success') this.lastReload.setToCurrentTime()
  }
}

/** The metrics the README documents; a test keeps this list, the registry and the README in step. */
export const METRIC_NAMES = [
  'gateway_requests_total',
  'gateway_auth_decisions_total',
  'gateway_auth_duration_seconds',
  'gateway_upstream_duration_seconds',
  'gateway_introspection_requests_total',
  'gateway_token_cache_lookups_total',
  'gateway_jwks_fetches_total',
  'gateway_config_reloads_total',
  'gateway_config_last_reload_success_timestamp_seconds',
  'gateway_redis_up',
] as const
