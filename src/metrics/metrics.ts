import { collectDefaultMetrics, Gauge, Registry } from 'prom-client'
import { TLS_FAILURES } from '../pipeline/forward/tls.js'
import { CounterSeries, HistogramSeries } from './series.js'
import type { CacheSource, CacheTier } from '../cache/tiered-cache.js'
import type { RejectedKey } from '../pipeline/authn/remote-jwks.js'
import type { DependencyObserver } from '../pipeline/authn/dependency-observer.js'
import { BUILD } from '../build-info.js'

export type { DependencyObserver }

/** Label values are from fixed sets only: never raw paths, tokens or client ids. */
export type AuthMethod = 'jwt' | 'introspection'
export type AuthCache = CacheSource | 'none'

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
/** From a tenth of a millisecond (a cached token, a refusal) to a minute (an upload). */
const REQUEST_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
/** From a second to a day. */
const TUNNEL_BUCKETS = [1, 10, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400]
const UPSTREAM_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/** What the pipeline and its caches report; the metrics are one implementation. */
export interface Observer extends DependencyObserver {
  cacheLookup(tier: CacheTier, hit: boolean): void
  redisUp(up: boolean): void
}

/** The gateway's metrics, in a registry of their own. */
export class Metrics implements Observer {
  readonly registry = new Registry()
  readonly requests: CounterSeries
  readonly requestDuration: HistogramSeries
  readonly decisions: CounterSeries
  readonly authDuration: HistogramSeries
  readonly upstreamDuration: HistogramSeries
  readonly introspections: CounterSeries
  readonly claimRuleDenials: CounterSeries
  readonly upstreamTlsFailures: CounterSeries
  readonly bindingFailures: CounterSeries
  readonly websocketCloses: CounterSeries
  readonly websocketDuration: HistogramSeries
  readonly websocketOpen: Gauge
  readonly dpopReplayLocal: CounterSeries
  readonly cacheLookups: CounterSeries
  readonly cacheIntegrityFailures: CounterSeries
  readonly jwksFetches: CounterSeries
  readonly jwksKeysRejectedTotal: CounterSeries
  readonly reloads: CounterSeries
  readonly rateLimitDecisions: CounterSeries
  readonly traceSpansDroppedTotal: CounterSeries
  readonly traceExports: CounterSeries
  readonly rateLimitStoreDuration: HistogramSeries
  readonly rateLimitStoreFailures: CounterSeries
  readonly lastReload: Gauge
  private redisGauge: Gauge | undefined
  readonly redisConfigured: Gauge
  readonly buildInfo: Gauge
  readonly configInfo: Gauge

  constructor(options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry]
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry })
    // Counters and histograms are plain numbers, formatted at scrape time (series.ts):
    // prom-client would hash the label values on every update, on the request path.
    this.requests = new CounterSeries(
      'gateway_requests_total',
      'Requests answered, by route id ("none" when no route matched), method, status class and auth decision (allow, deny): an allowed request the upstream failed is allow with status_class 5xx.',
      ['route', 'method', 'status_class', 'decision'],
      this.registry,
    )
    this.requestDuration = new HistogramSeries(
      'gateway_request_duration_seconds',
      'Time from a request\'s arrival to the end of its answer, by route ("none" when no route matched).',
      ['route'],
      REQUEST_BUCKETS,
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
      'Time to authenticate and authorize a token, by auth_method (jwt, introspection) and cache outcome (memory, shared, origin).',
      ['auth_method', 'cache'],
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
    this.claimRuleDenials = new CounterSeries(
      'gateway_claim_rule_denials_total',
      'Requests refused by a claim rule (403 claim_rule_failed), by route and rule id.',
      ['route', 'rule'],
      this.registry,
    )
    this.bindingFailures = new CounterSeries(
      'gateway_token_binding_failures_total',
      'Requests refused by a sender-constraint check (DPoP proof, nonce, replay, token binding, client certificate), by route and reason (the error code).',
      ['route', 'reason'],
      this.registry,
    )
    this.websocketCloses = new CounterSeries(
      'gateway_websocket_closes_total',
      'WebSocket tunnels ended, by route and reason (closed by a side, token_expired, idle, max_duration, shutdown, error).',
      ['route', 'reason'],
      this.registry,
    )
    this.websocketDuration = new HistogramSeries('gateway_websocket_duration_seconds', 'How long WebSocket tunnels stayed open, by route.', ['route'], TUNNEL_BUCKETS, this.registry)
    this.websocketOpen = new Gauge({ name: 'gateway_websocket_open', help: 'WebSocket tunnels open now, by route.', labelNames: ['route'], aggregator: 'sum', registers: [this.registry] })
    this.dpopReplayLocal = new CounterSeries('gateway_dpop_replay_local_total', 'DPoP proofs checked for replay in process memory because Redis did not answer (dpop.replay.on_redis_error: local).', [], this.registry)
    this.upstreamTlsFailures = new CounterSeries(
      'gateway_upstream_tls_failures_total',
      'Requests answered 502 because TLS to the upstream failed, by upstream and reason (untrusted, expired, name_mismatch, pin_mismatch, handshake).',
      ['upstream', 'reason'],
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
    this.rateLimitDecisions = new CounterSeries(
      'gateway_rate_limit_decisions_total',
      'Rate-limit decisions, by route, limit id and decision (allowed, limited: 429, unavailable: 503 because Redis did not answer and the limit says deny).',
      ['route', 'limit', 'decision'],
      this.registry,
    )
    this.rateLimitStoreDuration = new HistogramSeries(
      'gateway_rate_limit_redis_duration_seconds',
      'Time of one rate-limit script call to Redis (answered calls only).',
      [],
      LATENCY_BUCKETS,
      this.registry,
    )
    this.rateLimitStoreFailures = new CounterSeries(
      'gateway_rate_limit_redis_failures_total',
      'Rate-limit decisions Redis did not answer, by route, limit id and the on_redis_error mode applied (allow, deny, local).',
      ['route', 'limit', 'mode'],
      this.registry,
    )
    this.traceSpansDroppedTotal = new CounterSeries('gateway_trace_spans_dropped_total', 'Ended spans dropped because the export queue was full (the collector is slow or away).', [], this.registry)
    this.traceExports = new CounterSeries('gateway_trace_exports_total', 'Span exports to the OTLP endpoint, by outcome (success, failure: refused, failed or timed out).', ['outcome'], this.registry)
    this.reloads = new CounterSeries('gateway_config_reloads_total', 'Configuration reloads, by outcome (success, failure).', ['outcome'], this.registry)
    // With several workers the primary aggregates: the oldest configuration, and Redis up only if up everywhere.
    this.lastReload = new Gauge({
      name: 'gateway_config_last_reload_success_timestamp_seconds',
      help: 'When the configuration in force was loaded (Unix time).',
      aggregator: 'min',
      registers,
    })
    this.registers = registers
    this.redisConfigured = new Gauge({ name: 'gateway_redis_configured', help: '1 when a shared Redis is configured, else 0.', aggregator: 'max', registers })
    this.redisConfigured.set(0)
    this.buildInfo = new Gauge({ name: 'gateway_build_info', help: 'Always 1; the labels say which build runs.', labelNames: ['version', 'commit', 'node'], aggregator: 'max', registers })
    this.buildInfo.set({ version: BUILD.version, commit: BUILD.commit, node: process.version }, 1)
    this.configInfo = new Gauge({ name: 'gateway_config_info', help: 'Always 1; hash is the SHA-256 (first 12 hex digits) of the configuration file in force.', labelNames: ['hash'], aggregator: 'max', registers })
    this.lastReload.setToCurrentTime()
    for (const c of STATUS_CLASSES) for (const m of KNOWN_METHODS) this.requests.inc(['none', m, c, 'deny'], 0)
  }

  private readonly registers: Registry[]

  /** The Redis gauge exists only when Redis is configured (an absent series is not "down"). */
  get redis(): Gauge | undefined {
    return this.redisGauge
  }

  /**
   * Series that should read 0 before their first event (so rate() and alerts
   * work from the start), for the routes and issuers of a configuration; called
   * at start and on every reload. Also records which configuration is in force.
   */
  prime(config: {
    routes: ReadonlyArray<{ id: string; methods: readonly string[] | null; protected: boolean; rules: readonly string[]; limits?: readonly { id: string; mode: string }[]; websocket?: boolean }>
    issuers: readonly string[]
    redis: boolean
    hash: string
    tlsUpstreams?: readonly string[]
    tracing?: boolean
  }): void {
    if (config.tracing) {
      this.traceSpansDroppedTotal.inc([], 0)
      for (const o of ['success', 'failure']) this.traceExports.inc([o], 0)
    }
    for (const upstream of config.tlsUpstreams ?? []) for (const reason of TLS_FAILURES) this.upstreamTlsFailures.inc([upstream, reason], 0)
    for (const route of config.routes) {
      if (route.id.startsWith('@')) continue
      for (const m of route.methods ?? ['GET']) {
        const method = KNOWN_METHODS.has(m) ? m : 'OTHER'
        for (const c of ['2xx', '4xx', '5xx']) this.requests.inc([route.id, method, c, 'allow'], 0)
        if (route.protected) for (const c of ['4xx', '5xx']) this.requests.inc([route.id, method, c, 'deny'], 0)
      }
      this.decisions.inc([route.id, 'allow', 'ok'], 0)
      if (route.protected) for (const reason of ['token_missing', 'scope_insufficient', 'dependency_unavailable']) this.decisions.inc([route.id, 'deny', reason], 0)
      this.decisions.inc([route.id, 'deny', 'upstream_unavailable'], 0)
      for (const rule of route.rules) this.claimRuleDenials.inc([route.id, rule], 0)
      if (route.websocket) {
        this.websocketOpen.inc({ route: route.id }, 0)
        for (const reason of ['closed', 'token_expired', 'idle']) this.websocketCloses.inc([route.id, reason], 0)
      }
      if (route.protected) for (const reason of ['token_binding_missing', 'token_binding_mismatch', 'dpop_proof_invalid', 'dpop_proof_replayed']) this.bindingFailures.inc([route.id, reason], 0)
      for (const limit of route.limits ?? []) {
        for (const d of ['allowed', 'limited']) this.rateLimitDecisions.inc([route.id, limit.id, d], 0)
        if (config.redis) this.rateLimitStoreFailures.inc([route.id, limit.id, limit.mode], 0)
      }
    }
    for (const issuer of config.issuers) {
      for (const o of ['success', 'failure'] as const) this.jwksFetches.inc([issuer, o], 0)
      for (const o of ['active', 'inactive', 'error'] as const) this.introspections.inc([issuer, o], 0)
    }
    for (const o of ['success', 'failure']) this.reloads.inc([o], 0)
    if (config.redis) this.dpopReplayLocal.inc([], 0)
    if (config.redis && !this.redisGauge) {
      this.redisGauge = new Gauge({ name: 'gateway_redis_up', help: '1 while the shared Redis cache answers, 0 while the gateway runs without it; absent when no Redis is configured.', aggregator: 'min', registers: this.registers })
      this.redisGauge.set(0)
    }
    this.redisConfigured.set(config.redis ? 1 : 0)
    this.configInfo.reset()
    this.configInfo.set({ hash: config.hash }, 1)
  }

  /** The per-request metrics, recorded once its response is over. */
  request(route: string | undefined, method: string, status: number, decision: 'allow' | 'deny', seconds: number): void {
    const cls = STATUS_CLASSES[Math.min(Math.max(Math.floor(status / 100), 1), 5) - 1]!
    this.requests.inc([route ?? 'none', KNOWN_METHODS.has(method) ? method : 'OTHER', cls, decision])
    this.requestDuration.observe([route ?? 'none'], seconds)
  }

  decision(route: string | undefined, result: 'allow' | 'deny', reason: string): void {
    this.decisions.inc([route ?? 'none', result, reason])
  }

  upstreamTlsFailed(upstream: string, reason: string): void {
    this.upstreamTlsFailures.inc([upstream, reason])
  }

  websocketOpened(route: string): void {
    this.websocketOpen.inc({ route })
  }

  websocketClosed(route: string, reason: string, seconds: number): void {
    this.websocketOpen.dec({ route })
    this.websocketCloses.inc([route, reason])
    this.websocketDuration.observe([route], seconds)
  }

  bindingFailed(route: string, reason: string): void {
    this.bindingFailures.inc([route, reason])
  }

  replayCheckedLocally(): void {
    this.dpopReplayLocal.inc([])
  }

  claimRuleDenied(route: string, rule: string): void {
    this.claimRuleDenials.inc([route, rule])
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
    this.redisGauge?.set(up ? 1 : 0)
  }

  rateLimitDecided(route: string, limit: string, decision: string): void {
    this.rateLimitDecisions.inc([route, limit, decision])
  }

  rateLimitStoreSeconds(seconds: number): void {
    this.rateLimitStoreDuration.observe([], seconds)
  }

  rateLimitStoreFailed(route: string, limit: string, mode: string): void {
    this.rateLimitStoreFailures.inc([route, limit, mode])
  }

  traceSpansDropped(count: number): void {
    this.traceSpansDroppedTotal.inc([], count)
  }

  traceExported(outcome: 'success' | 'failure', _spans: number): void {
    this.traceExports.inc([outcome])
  }

  reload(outcome: 'success' | 'failure'): void {
    this.reloads.inc([outcome])
    if (outcome === 'success') this.lastReload.setToCurrentTime()
  }
}

/** The metrics the README documents; a test keeps this list, the registry and the README in step. */
export const METRIC_NAMES = [
  'gateway_requests_total',
  'gateway_request_duration_seconds',
  'gateway_auth_decisions_total',
  'gateway_auth_duration_seconds',
  'gateway_upstream_duration_seconds',
  'gateway_claim_rule_denials_total',
  'gateway_upstream_tls_failures_total',
  'gateway_token_binding_failures_total',
  'gateway_dpop_replay_local_total',
  'gateway_websocket_open',
  'gateway_websocket_closes_total',
  'gateway_websocket_duration_seconds',
  'gateway_introspection_requests_total',
  'gateway_token_cache_lookups_total',
  'gateway_token_cache_integrity_failures_total',
  'gateway_jwks_fetches_total',
  'gateway_jwks_keys_rejected_total',
  'gateway_rate_limit_decisions_total',
  'gateway_rate_limit_redis_duration_seconds',
  'gateway_rate_limit_redis_failures_total',
  'gateway_trace_spans_dropped_total',
  'gateway_trace_exports_total',
  'gateway_config_reloads_total',
  'gateway_config_last_reload_success_timestamp_seconds',
  'gateway_redis_up',
  'gateway_redis_configured',
  'gateway_build_info',
  'gateway_config_info',
] as const
