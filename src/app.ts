import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import replyFrom from '@fastify/reply-from'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { ExpiringLru } from './cache/lru.js'
import { RedisStore, type SharedStore } from './cache/redis-store.js'
import { TieredCache } from './cache/tiered-cache.js'
import type { CompiledConfig } from './config/compile.js'
import { introspectionCodec, type IntrospectionRecord } from './pipeline/authn/introspection.js'
import { Metrics } from './metrics/metrics.js'
import { VerifiedTokenCache } from './pipeline/authn/verified-cache.js'
import { createHandler, type ConfigSource } from './handler.js'
import { GatewayError } from './errors.js'
import { asGatewayError, errorReply } from './http/error-reply.js'

export interface GatewayOptions {
  readonly config: CompiledConfig
  /** A pino logger; by default nothing is logged (tests). */
  readonly logger?: FastifyBaseLogger
  /** The clock of cache and token decisions (tests). */
  readonly now?: () => number
  /** The metrics to record into; the one also given to compileConfig as observer. */
  readonly metrics?: Metrics
}

export interface Gateway extends ConfigSource {
  /** The proxy listener's app. It never listens by itself: see server.ts. */
  readonly app: FastifyInstance
  /** Swaps in a new compiled configuration; requests already running keep theirs. */
  setConfig(config: CompiledConfig): void
  /** The introspection result cache (both tiers), kept across reloads. */
  readonly introspectionCache: TieredCache<IntrospectionRecord>
  /** The shared tier, when Redis is configured. */
  readonly sharedStore: SharedStore | undefined
  readonly metrics: Metrics
  close(): Promise<void>
}

const REQUEST_ID = /^[A-Za-z0-9._:@-]{1,128}$/

function requestId(req: IncomingMessage): string {
  const given = req.headers['x-request-id']
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
}

/** A hop count becomes "trust the first n hops", as proxy-addr reads it. */
function trustProxyOption(trust: CompiledConfig['server']['trustProxy']): boolean | string[] | ((addr: string, hop: number) => boolean) {
  if (typeof trust === 'number') return (_addr, hop) => hop < trust
  return trust
}

/**
 * Builds the gateway's proxy app around a compiled configuration. Listener
 * settings (`server.listen`, `trust_proxy`, `body_limit`) are read here, once.
 */
export async function buildGateway(options: GatewayOptions): Promise<Gateway> {
  let current = options.config
  const { server } = current
  const now = options.now ?? Date.now
  const metrics = options.metrics ?? new Metrics({ processMetrics: false })
  const redis = current.cache.redis
  const sharedStore = redis
    ? new RedisStore({ url: redis.url, timeoutMs: redis.timeoutMs, logger: options.logger as never, onStatus: (up) => metrics.redisUp(up) })
    : undefined
  if (sharedStore) metrics.redisUp(false)
  const introspectionCache = new TieredCache<IntrospectionRecord>({
    memory: new ExpiringLru(current.cache.memoryEntries, now),
    shared: sharedStore && redis ? prefixed(sharedStore, redis.keyPrefix) : undefined,
    codec: introspectionCodec,
    now,
    onLookup: (tier, hit) => metrics.cacheLookup(tier, hit),
  })
  const app = Fastify({
    loggerInstance: options.logger,
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: trustProxyOption(server.trustProxy),
    bodyLimit: server.bodyLimit,
    genReqId: requestId,
    return503OnClosing: true,
    // Paths are ours to parse (src/pipeline/normalize): the router only needs one catch-all.
    routerOptions: { ignoreDuplicateSlashes: false, maxParamLength: 8192 },
  })

  await app.register(replyFrom, {
    disableRequestLogging: true,
    // Verify upstream TLS certificates (reply-from's default is not to).
    undici: { connections: 256, pipelining: 1, connect: { rejectUnauthorized: true } },
  })

  // Bodies stream to the upstream untouched, except form bodies, which are
  // read (bounded) to find a second access token.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'buffer' }, (_req, body, done) => done(null, body))
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload))

  app.decorateRequest('outcome', null)
  app.addHook('onRequest', async (request, reply) => {
    request.outcome = { routeId: undefined, path: undefined, principal: undefined, auth: undefined, forwarded: undefined, decision: undefined, reason: undefined }
    reply.header('x-request-id', request.id)
  })

  // One log line and the metrics of each request. Never the query string,
  // headers or body: they may carry secrets.
  app.addHook('onResponse', async (request, reply) => {
    const o = request.outcome
    const status = reply.statusCode
    metrics.request(o?.routeId, request.method, status)
    const decision = o?.decision ?? 'deny'
    metrics.decisions.labels(o?.routeId ?? 'none', decision, decision === 'allow' ? 'ok' : (o?.reason ?? 'unknown')).inc()
    if (o?.auth) metrics.authDuration.labels(o.auth.method, o.auth.cache).observe(o.auth.seconds)
    if (o?.forwarded && o.routeId) metrics.upstreamDuration.labels(o.routeId, o.forwarded.upstream).observe((performance.now() - o.forwarded.at) / 1000)
    request.log.info(
      {
        route: o?.routeId ?? null,
        method: request.method,
        path: o?.path ?? null,
        status: reply.statusCode,
        client_id: o?.principal?.clientId ?? null,
        decision: o?.decision ?? 'deny',
        reason: o?.reason ?? null,
        ms: Math.round(reply.elapsedTime * 100) / 100,
      },
      'request',
    )
  })

  app.setErrorHandler((err, request, reply) => {
    const error = asGatewayError(err)
    if (request.outcome) {
      request.outcome.reason = error.code
      request.outcome.decision ??= 'deny'
    }
    const answer = errorReply(error, { realm: current.server.realm, resourceMetadata: current.resourceMetadata }, request.id)
    if (answer.status >= 500) request.log.error({ err, code: error.code, route: request.outcome?.routeId }, 'request failed')
    return reply.code(answer.status).headers(answer.headers).send(answer.body)
  })
  // Only methods the catch-all route does not serve end up here.
  app.setNotFoundHandler(async () => {
    throw new GatewayError('route_not_found', 'no route matches this request')
  })

  const gateway: Gateway = {
    app,
    get current() {
      return current
    },
    setConfig(config) {
      warmKeys(config)
      current = config
    },
    introspectionCache,
    sharedStore,
    metrics,
    async close() {
      await app.close()
      await sharedStore?.close()
    },
  }
  const verifiedTokens = new VerifiedTokenCache(current.cache.memoryEntries, now)
  app.all('*', createHandler(gateway, { introspectionCache, verifiedTokens, now }))
  // After listening: an issuer may be this very gateway (the built-in authorization server).
  app.addHook('onListen', async () => warmKeys(current))
  for (const notice of current.notices) app.log.warn(notice)
  return gateway
}

/** The shared store seen through a key prefix (one prefix per deployment, or per test run). */
function prefixed(store: SharedStore, prefix: string): SharedStore {
  return {
    get: (key) => store.get(prefix + key),
    set: (key, value, ttlMs) => store.set(prefix + key, value, ttlMs),
    get up() {
      return store.up
    },
    close: () => store.close(),
  }
}

/** Starts fetching key sets that have none yet, so the first request does not wait. */
function warmKeys(config: CompiledConfig): void {
  for (const issuer of config.issuers.values()) {
    if (issuer.jwks && !issuer.jwks.hasKeys) void issuer.jwks.warm()
  }
}
