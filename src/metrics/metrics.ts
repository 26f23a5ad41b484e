import { collectDefaultMetrics, Gauge, Registry } from 'prom-client'
import { CounterSeries, HistogramSeries } from './series.js'
import type { CacheSource, CacheTier } from '../cache/tiered-cache.js'
import type { RejectedKey } from '../pipeline/authn/remote-jwks.js'

/** Label values are from fixed sets only: never raw paths, tokens or client ids. */
export type AuthMethod = 'jwt' | 'introspection'
export type AuthCache = CacheSource | 'none'

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
const UPSTREAM_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/** What key and introspection clients report (compiled with the configuration). */
export interface DependencyObserver {
  jwksFetch(issuer: string, outcome: 'success' | 'failure', error?: unknown): void
  jwksKeysRejected(issuer: string, rejected: readonly RejectedKey[]): void
  introspection(issuer: string, outcome: 'active' | 'inactive' | 'error', error?: unknown): void
}

/** What the pipeline and its caches report; the metrics are one implementation. */
export interface Observer extends DependencyObserver {
  cacheLookup(tier: CacheTier, hit: boolean): void
  redisUp(up: boolean): void
}

/** The gateway's metrics, in a registry of their own. */
export class Metrics implements Observer {
  readonly registry = new Registry()
  readonly requests: CounterSeries
  readonly decisions: CounterSeries
  readonly authDuration: HistogramSeries
  readonly upstreamDuration: HistogramSeries
  readonly introspections: CounterSeries
  readonly cacheLookups: CounterSeries
  readonly cacheIntegrityFailures: CounterSeries
  readonly jwksFetches: CounterSeries
  readonly jwksKeysRejectedTotal: CounterSeries
  readonly reloads: CounterSeries
  readonly lastReload: Gauge
  readonly redis: Gauge

  constructor(options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry]
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry })
    // Counters and histograms are plain numbers, formatted at scrape time (series.ts):
    // prom-client would hash the label values on every update, on the request path.
    this.requests = new CounterSeries(
      'gateway_requests_total',
      'Requests answered, by route id ("none" when no route matched), method and status class.',
      ['route', 'method', 'status_class'],
      this.registry,
    )
    this.decisions = new CounterSeries(
      'gateway_auth_decisions_total',
      'Authorization decisions, by route, result (allow, deny) and reason code ("ok" when allowed).',
      ['route', 'result', 'reason'],
      this.registry,
    )
    this.authDuration = new HistogramSeries(
      'gateway_auth_duration_seconds',
      'Time to authenticate and authorize a token, by method (jwt, introspection) and cache outcome (memory, shared, origin).',
      ['method', 'cache'],
      LATENCY_BUCKETS,
      this.registry,
    )
    this.upstreamDuration = new HistogramSeries(
      'gateway_upstream_duration_seconds',
      'Time from forwarding a request to the end of the upstream response, by route and upstream.',
      ['route', 'upstream'],
      UPSTREAM_BUCKETS,
      this.registry,
    )
    this.introspections = new CounterSeries(
      'gateway_introspection_requests_total',
      'Calls to introspection endpoints, by issuer and outcome (active, inactive, error).',
      ['issuer', 'outcome'],
      this.registry,
    )
    this.cacheLookups = new CounterSeries(
      'gateway_token_cache_lookups_total',
      'Token cache lookups, by tier (memory, shared) and result (hit, miss).',
      ['tier', 'result'],
      this.registry,
    )
    this.cacheIntegrityFailures = new CounterSeries(
      'gateway_token_cache_integrity_failures_total',
      'Values in the shared cache whose seal did not verify (altered, moved or forged in Redis); each was treated as a miss.',
      ['tier'],
      this.registry,
    )
    this.cacheIntegrityFailures.inc(['shared'], 0)
    this.jwksFetches = new CounterSeries('gateway_jwks_fetches_total', 'JWKS fetches, by issuer and outcome (success, failure).', ['issuer', 'outcome'], this.registry)
    this.jwksKeysRejectedTotal = new CounterSeries(
      'gateway_jwks_keys_rejected_total',
      'Keys left out of fetched key sets, once per new set, by issuer and reason (too_weak, unusable, no_allowed_algorithm).',
      ['issuer', 'reason'],
      this.registry,
    )
    this.reloads = new CounterSeries('gateway_config_reloads_total', 'Configuration reloads, by outcome (success, failure).', ['outcome'], this.registry)
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
    for (const c of STATUS_CLASSES) for (const m of KNOWN_METHODS) this.requests.inc(['none', m, c], 0)
  }

  /** The per-request metrics, recorded once its response is over. */
  request(route: string | undefined, method: string, status: number): void {
    const cls = STATUS_CLASSES[Math.min(Math.max(Math.floor(status / 100), 1), 5) - 1]!
    this.requests.inc([route ?? 'none', KNOWN_METHODS.has(method) ? method : 'OTHER', cls])
  }

  decision(route: string | undefined, result: 'allow' | 'deny', reason: string): void {
    this.decisions.inc([route ?? 'none', result, reason])
  }

  auth(method: string, cache: string, seconds: number): void {
    this.authDuration.observe([method, cache], seconds)
  }

  upstream(route: string, upstream: string, seconds: number): void {
    this.upstreamDuration.observe([route, upstream], seconds)
  }

  jwksFetch(issuer: string, outcome: 'success' | 'failure'): void {
    this.jwksFetches.inc([issuer, outcome])
  }

  jwksKeysRejected(issuer: string, rejected: readonly RejectedKey[]): void {
    for (const r of rejected) this.jwksKeysRejectedTotal.inc([issuer, r.reason])
  }

  introspection(issuer: string, outcome: 'active' | 'inactive' | 'error'): void {
    this.introspections.inc([issuer, outcome])
  }

  cacheLookup(tier: CacheTier, hit: boolean): void {
    this.cacheLookups.inc([tier, hit ? 'hit' : 'miss'])
  }

  cacheIntegrityFailure(): void {
    this.cacheIntegrityFailures.inc(['shared'])
  }

  redisUp(up: boolean): void {
    this.redis.set(up ? 1 : 0)
  }

  reload(outcome: 'success' | 'failure'): void {
    this.reloads.inc([outcome])
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
  'gateway_token_cache_integrity_failures_total',
  'gateway_jwks_fetches_total',
  'gateway_jwks_keys_rejected_total',
  'gateway_config_reloads_total',
  'gateway_config_last_reload_success_timestamp_seconds',
  'gateway_redis_up',
] as const
