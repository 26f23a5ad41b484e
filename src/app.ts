import { createServer as createHttpServer, METHODS, ServerResponse, type IncomingMessage, type RequestListener, type Server } from 'node:http'
import type { Socket } from 'node:net'
import { Duplex } from 'node:stream'
import { createServer as createHttpsServer } from 'node:https'
import { constants as h2, createSecureServer as createH2SecureServer, createServer as createH2cServer, type Http2Session } from 'node:http2'
import type { Server as TlsServer } from 'node:tls'
import type { AddressInfo } from 'node:net'
import type { SecureContextOptions } from 'node:tls'
import { TLS12_CIPHERS, type CompiledListenerTls } from './config/tls-listener.js'
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { AccessLog } from './access-log.js'
import { RedisStore, type SharedStore } from './cache/redis-store.js'
import { RevocationBus } from './cache/revocation-bus.js'
import { TieredCache } from './cache/tiered-cache.js'
import type { CompiledConfig } from './config/compile.js'
import { GatewayError } from './errors.js'
import { createHandler, upgradeSockets, type ConfigSource, type RequestOutcome } from './handler.js'
import type { TunnelObserver } from './pipeline/websocket/tunnel.js'
import { asGatewayError, errorReply, grpcReply, isGrpc } from './http/error-reply.js'
import { newRequestId } from './http/request-id.js'
import { Metrics } from './metrics/metrics.js'
import { occasionally } from './log-throttle.js'
import { describeCause } from './dependency-log.js'
import { IntrospectionMemory, introspectionCodec, type IntrospectionRecord } from './pipeline/authn/introspection.js'
import { VerifiedTokenCache } from './pipeline/authn/verified-cache.js'
import { bodyBytesRelayed, Forwarder } from './pipeline/forward/upstream.js'
import { bodyBytesRead, bodyUnread } from './pipeline/body/receive.js'
import { RateLimiter, rateLimitHeaders, type RateLimitObserver } from './pipeline/ratelimit/limiter.js'
import { LocalBuckets, RedisBuckets } from './cache/rate-limit-store.js'
import { GatewayTracer } from './observe/tracing.js'
import proxyaddr from '@fastify/proxy-addr'
import { ReplayGuard } from './pipeline/binding/replay.js'
import { BINDING_FAILURES } from './pipeline/binding/binding.js'

export interface GatewayOptions {
  readonly config: CompiledConfig
  /** The logger; by default nothing is logged (tests). */
  readonly logger?: Logger
  /** The clock of cache and token decisions (tests). */
  readonly now?: () => number
  /** The metrics to record into; the one also given to compileConfig as observer. */
  readonly metrics?: Metrics
}

export interface Gateway extends ConfigSource {
  /** The proxy listener's app (its server is the plain listener, else the HTTPS one). */
  readonly app: FastifyInstance
  /**
   * Starts the listeners the configuration names (plain HTTP and/or HTTPS);
   * their URLs. Tests may instead call app.listen for the plain one alone.
   */
  listen(): Promise<{ url: string | undefined; tlsUrl: string | undefined; h2cUrl: string | undefined }>
  /** Closes every open client connection now (a drain's deadline). */
  closeAllConnections(): void
  /** Swaps in a new compiled configuration; requests already running keep theirs. */
  setConfig(config: CompiledConfig): void
  /**
   * Starts a drain: every answer from now on says Connection: close, and
   * connections are closed as soon as they are idle, so the listener closes
   * as soon as the last request in flight ends.
   */
  startDrain(): void
  /** The introspection result cache (both tiers), kept across reloads. */
  readonly introspectionCache: TieredCache<IntrospectionRecord>
  /** The shared tier, when Redis is configured. */
  readonly sharedStore: SharedStore | undefined
  /** Revocations shared through Redis, when it is configured. */
  readonly revocationBus: RevocationBus | undefined
  readonly metrics: Metrics
  /** The tracer, when tracing is configured. */
  readonly tracer: GatewayTracer | undefined
  close(): Promise<void>
}

const REQUEST_ID = /^[A-Za-z0-9._:@-]{1,128}$/
const SILENT: FastifyBaseLogger = {
  level: 'silent',
  fatal: () => undefined,
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
  trace: () => undefined,
  silent: () => undefined,
  child: () => SILENT,
}

function requestId(req: IncomingMessage): string {
  const given = req.headers['x-request-id']
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : newRequestId()
}

/**
 * Builds the gateway's proxy app around a compiled configuration. Listener
 * settings (`server.listen`, `trust_proxy`, `body_limit`, `cache`) are read
 * here, once.
 */
export async function buildGateway(options: GatewayOptions): Promise<Gateway> {
  let current = options.config
  const { server } = current
  const log: FastifyBaseLogger = options.logger ?? SILENT
  const accessLog = options.logger ? new AccessLog(options.logger) : undefined
  const now = options.now ?? Date.now
  const metrics = options.metrics ?? new Metrics({ processMetrics: false })
  const redis = current.cache.redis
  const sharedStore = redis
    ? new RedisStore({ topology: redis.topology, timeoutMs: redis.timeoutMs, logger: options.logger as never, onStatus: (up) => metrics.redisUp(up) })
    : undefined
  primeMetrics(metrics, current)
  const logTampered = occasionally(60_000, (count) =>
    log.warn({ count }, 'shared cache values failed their integrity check and were ignored (altered, moved or forged in Redis?)'),
  )
  const introspectionCache = new TieredCache<IntrospectionRecord>({
    memory: new IntrospectionMemory(current.cache.memoryEntries, now),
    shared: sharedStore && redis ? prefixed(sharedStore, redis.keyPrefix) : undefined,
    codec: introspectionCodec,
    sharedPrefix: 'introspection:',
    now,
    onLookup: (tier, hit) => metrics.cacheLookup(tier, hit),
    onIntegrityFailure: () => {
      metrics.cacheIntegrityFailure()
      logTampered()
    },
  })
  const verifiedTokens = new VerifiedTokenCache(current.cache.memoryEntries, now)
  // With Redis, revocations reach every replica; one that may have missed some drops its token caches.
  const revocationBus = redis
    ? new RevocationBus(redis.topology, redis.keyPrefix, () => current.revocations, () => {
        verifiedTokens.clear()
        introspectionCache.forgetAll()
      }, options.logger)
    : undefined
  if (revocationBus) current.revocations.relay = (denial) => revocationBus.publish(denial)
  // Buckets live in Redis when it is configured, else here; they outlive reloads.
  const limiter = new RateLimiter(
    sharedStore && redis ? new RedisBuckets(sharedStore, redis.keyPrefix, redis.waitReplicas) : undefined,
    new LocalBuckets(current.rateLimits.maxBuckets),
    rateLimitObserver(metrics, log),
    now,
  )
  // Tracing is read once, at start; off, nothing below allocates for it.
  const tracer = current.tracing ? new GatewayTracer(current.tracing, { spansDropped: (n) => metrics.traceSpansDropped(n), exported: (o, n) => metrics.traceExported(o, n) }) : undefined
  const trustedPeer = server.trustProxy === false ? () => false : proxyaddr.compile(server.trustProxy)
  const limits = current.limits
  const forwarder = new Forwarder({ bufferBytes: limits.bodyBufferBytes, bufferTotalBytes: limits.bodyBufferTotalBytes })

  // Fastify's per-request child loggers are not needed: the gateway writes
  // one line per request itself (record, below), with the request id in it.
  // Listener bounds (limits.ts): a silent or slow client holds a connection
  // for header_timeout, a request for request_timeout, an idle kept-alive
  // connection for keep_alive_timeout; the checks run every second.
  // The listeners: plain HTTP and/or HTTPS, both serving this one app.
  const listenerOptions = { headersTimeout: limits.headerTimeoutMs, maxHeaderSize: limits.maxHeaderBytes, requestTimeout: limits.requestTimeoutMs, keepAliveTimeout: limits.keepAliveTimeoutMs, connectionsCheckingInterval: 1000 }
  let secure: TlsServer | undefined
  /** The listeners: plain HTTP, HTTPS (with h2 when configured), h2c; the first is fastify's own. */
  const listeners: Array<{ server: Server; host: string; port: number; scheme: 'http' | 'https' }> = []
  /** The h2c server that takes the HTTP/2 connections of the plain listener, when it does. */
  const h2cOnPlain: Server[] = []
  /** Open HTTP/2 sessions (a drain sends them GOAWAY). */
  const sessions = new Set<Http2Session>()
  /** Sockets taken by upgrades (tunnels among them): a close ends them. */
  const upgraded = new Set<Socket>()
  const app = Fastify({
    serverFactory: (handler: RequestListener) => {
      const at = (host: string, port: number, scheme: 'http' | 'https') => ({ host, port, scheme })
      const h2settings = server.http2 ? { settings: { maxConcurrentStreams: server.http2.maxConcurrentStreams, maxHeaderListSize: limits.maxHeaderBytes }, maxSessionInvalidFrames: 100 } : undefined
      if (server.plain) {
        const plain = createHttpServer(listenerOptions, handler)
        // h2c with prior knowledge on the same port: each connection's first bytes say which protocol it speaks.
        if (server.http2?.cleartextOnPlain) {
          const h2c = createH2cServer({ ...h2settings }, handler as never) as unknown as Server
          h2cOnPlain.push(h2c)
          sniffPreface(plain, h2c, limits.headerTimeoutMs)
        }
        listeners.push({ server: plain, ...at(server.host, server.port, 'http') })
      }
      const tls = server.tls
      if (tls) {
        // With HTTP/2, ALPN offers h2 then http/1.1, and HTTP/1.1 clients are served by the same server.
        secure = server.http2?.tls
          ? (createH2SecureServer({ allowHTTP1: true, ...h2settings, ...secureContextOptions(tls), ...tlsServerOptions(tls), ALPNProtocols: ['h2', 'http/1.1'] }, handler as never) as unknown as TlsServer)
          : (createHttpsServer({ ...listenerOptions, ...secureContextOptions(tls), ...tlsServerOptions(tls) }, handler) as unknown as TlsServer)
        listeners.push({ server: secure as unknown as Server, ...at(tls.host, tls.port, 'https') })
      }
      const cleartext = server.http2?.cleartext
      if (cleartext) listeners.push({ server: createH2cServer({ ...h2settings }, handler as never) as unknown as Server, ...at(cleartext.host, cleartext.port, 'http') })
      for (const s of [...listeners.map((l) => l.server), ...h2cOnPlain]) {
        s.keepAliveTimeout = limits.keepAliveTimeoutMs
        s.requestTimeout = limits.requestTimeoutMs
        s.maxConnections = limits.maxConnections
        // Expect: 100-continue is answered by the pipeline, only once the request is allowed
        // (body/receive.ts); Node would otherwise send 100 before anything was decided.
        s.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => s.emit('request', req, res))
        // An upgrade goes through the app like any request, answered on its own socket (then closed);
        // a WebSocket route that allows it takes the socket over instead (handler.ts).
        s.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
          upgradeSockets.set(req, { socket, head })
          upgraded.add(socket)
          socket.once('close', () => upgraded.delete(socket))
          socket.on('error', () => socket.destroy())
          const res = new ServerResponse(req)
          res.shouldKeepAlive = false
          res.assignSocket(socket)
          res.once('finish', () => socket.end())
          s.emit('request', req, res)
        })
        // HTTP/2 sessions: counted for drains, and closed when they reset streams faster than allowed.
        if (server.http2) s.on('session', (session: Http2Session) => watchSession(session, server.http2!.maxResetsPerSecond, sessions))
      }
      return listeners[0]!.server
    },
    loggerInstance: SILENT,
    trustProxy: server.trustProxy,
    genReqId: requestId,
    // Requests that arrive on open connections during a drain are served, with Connection: close.
    return503OnClosing: false,
    routerOptions: { ignoreDuplicateSlashes: false, maxParamLength: 8192 },
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    connectionTimeout: 0,
    http: { headersTimeout: limits.headerTimeoutMs, maxHeaderSize: limits.maxHeaderBytes, connectionsCheckingInterval: 1000 },
  })

  // No body is read by fastify: the pipeline reads or streams it once the request is decided.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload))

  /** The log line and metrics of a request, once its response is over (sent, failed or abandoned). */
  const record = (request: FastifyRequest, reply: FastifyReply) => {
    const o = request.outcome
    const status = reply.raw.statusCode
    const decision = o?.decision ?? 'deny'
    metrics.request(o?.routeId, request.method, status, decision, reply.elapsedTime / 1000)
    metrics.decision(o?.routeId, decision, decision === 'allow' ? 'ok' : (o?.reason ?? 'unknown'))
    if (o?.auth) metrics.auth(o.auth.method, o.auth.cache, o.auth.seconds)
    if (o?.rule !== undefined && o.routeId !== undefined) metrics.claimRuleDenied(o.routeId, o.rule)
    if (o?.reason !== undefined && o.routeId !== undefined && BINDING_FAILURES.has(o.reason)) metrics.bindingFailed(o.routeId, o.reason)
    if (o?.forwarded && o.routeId) metrics.upstream(o.routeId, o.forwarded.upstream, (performance.now() - o.forwarded.at) / 1000)
    const traced = o?.trace !== undefined && tracer !== undefined ? tracer.ids(o.trace) : undefined
    if (o?.trace !== undefined && tracer !== undefined) tracer.endRequest(o.trace, { status, routeId: o.routeId, routePattern: o.routePattern, decision, reason: o.reason })
    accessLog?.write({
      reqId: request.id,
      route: o?.routeId,
      method: request.method,
      path: o?.path,
      status,
      clientId: o?.principal?.clientId,
      decision,
      reason: o?.reason,
      rule: o?.rule,
      limit: o?.limit,
      ms: Math.round(reply.elapsedTime * 100) / 100,
      aborted: !reply.raw.writableFinished,
      ip: o?.ip ?? request.ip ?? '',
      bytesIn: bytesIn(request.raw, o),
      bytesOut: bodyBytesRelayed(reply.raw) ?? (Number(reply.getHeader('content-length')) || 0),
      traceId: traced?.traceId,
      spanId: traced?.spanId,
    })
  }

  app.decorateRequest('outcome', null)
  // A callback hook: an async one would cost a promise per request.
  let draining: NodeJS.Timeout | undefined
  app.addHook('onRequest', (request, reply, done) => {
    // (HTTP/2 has no Connection header: a drain sends its sessions GOAWAY instead.)
    if (draining && request.raw.httpVersionMajor === 1) reply.raw.setHeader('connection', 'close')
    const socket = request.raw.socket
    request.outcome = {
      routeId: undefined,
      routePattern: undefined,
      path: undefined,
      principal: undefined,
      auth: undefined,
      forwarded: undefined,
      decision: undefined,
      reason: undefined,
      rule: undefined,
      limit: undefined,
      cors: undefined,
      rateLimit: undefined,
      trace: undefined,
      binding: undefined,
      dpopChallenge: false,
      dpopNonce: undefined,
      readAt: socket?.bytesRead ?? 0,
      ip: request.ip ?? '',
    }
    if (tracer !== undefined) {
      const raw = request.raw
      request.outcome.trace = tracer.startRequest({
        method: request.method,
        headers: raw.headers,
        trustedPeer: () => trustedPeer(socket?.remoteAddress ?? '', 0),
        describe: () => ({
          scheme: (socket as { encrypted?: boolean } | null)?.encrypted ? 'https' : 'http',
          host: raw.headers.host,
          path: (raw.url ?? '/').split('?', 1)[0]!,
          clientAddress: request.ip ?? '',
        }),
      })
    }
    reply.raw.once('close', () => record(request, reply))
    done()
  })
  // Replies fastify sends carry the id here; forwarded ones get it from the forwarder.
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id)
    const limited = rateLimitHeaders(request.outcome?.rateLimit)
    if (limited !== undefined) reply.headers(limited)
    const nonce = request.outcome?.dpopNonce
    if (nonce !== undefined && !reply.hasHeader('dpop-nonce')) reply.header('dpop-nonce', nonce)
    done(null, payload)
  })

  /** The one way a failed request is answered, through fastify or, once the forwarder took the reply over, directly. */
  const fail = (request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply | undefined => {
    const error = asGatewayError(err)
    if (request.outcome) {
      request.outcome.reason = error.code
      request.outcome.decision ??= 'deny'
      if (error.rule !== undefined) request.outcome.rule = error.rule
      if (error.limit !== undefined) request.outcome.limit = error.limit
      if (error.tlsFailure !== undefined && request.outcome.forwarded) metrics.upstreamTlsFailed(request.outcome.forwarded.upstream, error.tlsFailure)
    }
    const grpc = isGrpc(request.headers['content-type'])
    const plainAnswer = errorReply(
      error,
      { realm: current.server.realm, resourceMetadata: current.resourceMetadata, dpop: { algs: current.dpop.algs.join(' '), challenge: request.outcome?.dpopChallenge ?? false } },
      request.id,
    )
    // A gRPC client reads only grpc-status: a refusal is a Trailers-Only answer (HTTP 200, no body).
    const grpcAnswer = grpc ? grpcReply(plainAnswer) : undefined
    const answer = grpcAnswer ?? plainAnswer
    if (grpcAnswer !== undefined && !reply.raw.headersSent) reply.raw.addTrailers(grpcAnswer.trailers)
    if (plainAnswer.status >= 500) {
      // Expected failures of a dependency are a line with their cause; only the gateway's own faults carry a stack.
      if (error.code === 'internal_error') log.error({ reqId: request.id, err, code: error.code, route: request.outcome?.routeId }, 'request failed')
      else log.warn({ reqId: request.id, code: error.code, cause: describeCause(error.cause ?? error), route: request.outcome?.routeId }, 'request failed')
    }
    // A refusal costs no body: an unread one is never read, and its connection is closed.
    // (An HTTP/2 stream is bounded by flow control; its connection serves other streams.)
    const unread = request.raw.httpVersionMajor === 1 && bodyUnread(request.raw)
    if (unread) closeAfter(request.raw, reply.raw)
    // A refusal is readable by the page of an allowed origin (its status, WWW-Authenticate): CORS headers too.
    const cors = request.outcome?.cors
    const headers = unread || cors ? { ...answer.headers, ...cors, ...(unread ? { connection: 'close' } : {}) } : answer.headers
    if (!reply.sent) return reply.code(answer.status).headers(headers).send(grpc ? '' : answer.body)
    if (!reply.raw.headersSent) {
      reply.raw.writeHead(answer.status, { ...headers, ...rateLimitHeaders(request.outcome?.rateLimit), ...(request.outcome?.dpopNonce && !headers['dpop-nonce'] ? { 'dpop-nonce': request.outcome.dpopNonce } : {}), 'content-type': grpc ? 'application/grpc' : 'application/json; charset=utf-8', 'x-request-id': request.id })
      reply.raw.end(grpc ? undefined : JSON.stringify(answer.body))
    }
    return undefined
  }
  app.setErrorHandler((err, request, reply) => fail(request, reply, err))
  // Only methods the catch-all route does not serve end up here.
  app.setNotFoundHandler(async () => {
    throw new GatewayError('route_not_found', 'no route matches this request')
  })

  const gateway: Gateway = {
    app,
    get current() {
      return current
    },
    async listen() {
      const urlOf = (l: (typeof listeners)[number]) => {
        const a = l.server.address() as AddressInfo
        return `${l.scheme}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`
      }
      const [first, ...others] = listeners
      await app.listen({ host: first!.host, port: first!.port })
      for (const other of others) {
        await new Promise<void>((resolve, reject) => {
          other.server.once('error', reject)
          other.server.listen({ host: other.host, port: other.port }, () => {
            other.server.off('error', reject)
            resolve()
          })
        })
      }
      const s = current.server
      const h2c = s.http2?.cleartext ? listeners.at(-1) : undefined
      return {
        url: s.plain ? urlOf(listeners[0]!) : undefined,
        tlsUrl: s.tls ? urlOf(listeners[s.plain ? 1 : 0]!) : undefined,
        h2cUrl: h2c ? urlOf(h2c) : undefined,
      }
    },
    closeAllConnections() {
      for (const l of listeners) l.server.closeAllConnections?.()
      for (const session of sessions) session.destroy()
      for (const stop of openTunnels) stop()
    },
    setConfig(config) {
      warmKeys(config)
      // A rotated certificate (or client CA) serves new handshakes; open connections go on.
      const tls = config.server.tls
      if (secure !== undefined && tls !== undefined && secureContextChanged(current.server.tls, tls)) secure.setSecureContext(secureContextOptions(tls))
      current = config
      primeMetrics(metrics, config)
      forwarder.retain(config.router.routes.map((r) => r.upstream))
    },
    introspectionCache,
    sharedStore,
    revocationBus,
    metrics,
    tracer,
    startDrain() {
      if (draining) return
      // The second listener stops accepting too (fastify closes its own server).
      for (const l of listeners.slice(1)) if (l.server.listening) l.server.close()
      const closeIdle = () => {
        for (const l of listeners) l.server.closeIdleConnections?.()
      }
      // HTTP/2 clients are told to go elsewhere; the streams they have open finish.
      for (const session of sessions) session.close()
      for (const stop of openTunnels) stop()
      closeIdle()
      draining = setInterval(closeIdle, 100)
      draining.unref()
    },
    async close() {
      clearInterval(draining)
      for (const socket of upgraded) socket.destroy()
      for (const session of sessions) session.destroy()
      for (const l of listeners.slice(1)) {
        if (l.server.listening) await new Promise((resolve) => l.server.close(resolve))
        l.server.closeAllConnections?.()
      }
      await app.close()
      await forwarder.close()
      await sharedStore?.close()
      await revocationBus?.close()
      await current.authorizationServer?.verifier.close()
      await tracer?.shutdown()
    },
  }
  // Every method Node's parser accepts reaches the pipeline, whose method rules are total.
  for (const method of METHODS) if (method !== 'CONNECT' && !app.supportedMethods.includes(method)) app.addHttpMethod(method, { hasBody: true })
  // Open WebSocket tunnels: counted, and closed (1001) by a drain.
  const openTunnels = new Set<() => void>()
  const tunnels: TunnelObserver = {
    opened(route, stop) {
      openTunnels.add(stop)
      metrics.websocketOpened(route)
    },
    closed(route, reason, seconds, stop) {
      openTunnels.delete(stop)
      metrics.websocketClosed(route, reason, seconds)
    },
  }
  // Proofs seen outlive reloads; with Redis they are shared by every replica.
  const replay = new ReplayGuard(sharedStore && redis ? sharedStore : undefined, redis?.keyPrefix ?? '', metrics, now)
  const senders = { replay, trustedPeer: (address: string) => trustedPeer(address, 0) }
  const handle = createHandler(gateway, { introspectionCache, verifiedTokens, now }, limiter, forwarder, fail, senders, tunnels, tracer)
  app.all('*', handle)
  // After listening: an issuer may be this very gateway (the built-in authorization server).
  app.addHook('onListen', async () => warmKeys(current))
  for (const notice of current.notices) log.warn(notice)
  return gateway
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')

/**
 * h2c with prior knowledge on an HTTP/1.1 listener. A connection's first
 * bytes are read once: the HTTP/2 preface hands it to the h2c server,
 * anything else to the HTTP/1.1 server's own handler. The bytes already read
 * cannot go back into a socket that nghttp2 reads natively, so an HTTP/2
 * connection is handed over as a stream that replays them first, and that
 * stream answers for the socket's addresses (the client address stays the
 * client's). A connection silent past the header timeout is closed here.
 */
function sniffPreface(plain: Server, h2c: Server, headerTimeoutMs: number): void {
  const http1 = plain.listeners('connection') as Array<(socket: Socket) => void>
  plain.removeAllListeners('connection')
  plain.on('connection', (socket: Socket) => {
    let got: Buffer = Buffer.alloc(0)
    const silent = setTimeout(() => socket.destroy(), headerTimeoutMs)
    const onError = () => socket.destroy()
    socket.on('error', onError)
    socket.once('close', () => clearTimeout(silent))
    const onData = (chunk: Buffer) => {
      got = got.length === 0 ? chunk : Buffer.concat([got, chunk])
      const n = Math.min(got.length, PREFACE.length)
      const isH2 = got.subarray(0, n).equals(PREFACE.subarray(0, n))
      if (isH2 && got.length < PREFACE.length) return // the preface goes on in the next chunk
      socket.off('data', onData)
      clearTimeout(silent)
      if (!isH2) {
        socket.pause()
        socket.unshift(got)
        socket.off('error', onError)
        for (const listener of http1) listener.call(plain, socket)
        socket.resume()
        return
      }
      h2c.emit('connection', replaying(socket, got))
    }
    socket.on('data', onData)
  })
}

/** A duplex over `socket` that first yields `first` (bytes already read from it), with the socket's addresses. */
function replaying(socket: Socket, first: Buffer): Duplex {
  const duplex = new Duplex({
    read() {
      socket.resume()
    },
    write(chunk: Buffer, _encoding, callback) {
      socket.write(chunk, callback)
    },
    final(callback) {
      socket.end(callback)
    },
    destroy(err, callback) {
      socket.destroy(err ?? undefined)
      callback(err)
    },
  })
  duplex.push(first)
  socket.on('data', (chunk: Buffer) => {
    if (!duplex.push(chunk)) socket.pause()
  })
  socket.once('end', () => duplex.push(null))
  socket.once('close', () => duplex.destroy())
  for (const name of ['remoteAddress', 'remotePort', 'remoteFamily', 'localAddress', 'localPort'] as const) {
    Object.defineProperty(duplex, name, { get: () => socket[name] })
  }
  ;(duplex as unknown as { setNoDelay: Socket['setNoDelay'] }).setNoDelay = (...a) => socket.setNoDelay(...a)
  replayed.set(duplex, socket)
  return duplex
}

/** The socket under each replaying duplex: its session's socket answers with the client's address. */
const replayed = new WeakMap<Duplex, Socket>()

/**
 * Watches an HTTP/2 session: counted while open (drains), and closed with
 * GOAWAY ENHANCE_YOUR_CALM when it resets more streams in a second than
 * allowed (rapid reset, CVE-2023-44487: each reset stream cost the server
 * work the client never waited for).
 */
function watchSession(session: Http2Session, maxResetsPerSecond: number, sessions: Set<Http2Session>): void {
  sessions.add(session)
  // A session over a replaying duplex (h2c on the plain listener) runs on a JS stream socket, whose handle
  // knows no addresses: it is given the client's (what net.Socket reads remoteAddress and localAddress from).
  const inner = session.socket as unknown as { stream?: Duplex; _handle?: Record<string, unknown> }
  const original = inner.stream !== undefined ? replayed.get(inner.stream) : undefined
  const handle = original !== undefined ? inner._handle : undefined
  if (original !== undefined && handle !== undefined && handle !== null) {
    handle.getpeername = (out: Record<string, unknown>) => {
      Object.assign(out, { address: original.remoteAddress, port: original.remotePort, family: original.remoteFamily })
      return 0
    }
    handle.getsockname = (out: Record<string, unknown>) => {
      Object.assign(out, { address: original.localAddress, port: original.localPort, family: original.remoteFamily })
      return 0
    }
  }
  session.once('close', () => sessions.delete(session))
  let windowStart = Date.now()
  let resets = 0
  session.on('stream', (stream) => {
    stream.once('close', () => {
      if (stream.rstCode === h2.NGHTTP2_NO_ERROR) return
      const now = Date.now()
      if (now - windowStart >= 1000) {
        windowStart = now
        resets = 0
      }
      if (++resets > maxResetsPerSecond && !session.destroyed) {
        session.goaway(h2.NGHTTP2_ENHANCE_YOUR_CALM)
        session.destroy()
      }
    })
  })
  session.on('error', () => undefined)
}

/** What a TLS handshake uses, from the listener's files: replaced on reload without a restart. */
function secureContextOptions(tls: CompiledListenerTls): SecureContextOptions {
  return { cert: tls.cert, key: tls.key, ...(tls.ca !== undefined ? { ca: tls.ca } : {}), minVersion: tls.minVersion, ciphers: TLS12_CIPHERS, honorCipherOrder: true }
}

/** What only a restart changes: whether client certificates are asked for, and whether a bad one ends the handshake. */
function tlsServerOptions(tls: CompiledListenerTls) {
  return {
    ALPNProtocols: ['http/1.1'],
    requestCert: tls.clientCertificates !== 'none',
    rejectUnauthorized: tls.clientCertificates === 'require',
  }
}

function secureContextChanged(a: CompiledListenerTls | undefined, b: CompiledListenerTls): boolean {
  return a === undefined || a.cert !== b.cert || a.key !== b.key || a.ca !== b.ca || a.minVersion !== b.minVersion
}

/** Body bytes received: what the pipeline read of the body, else what the connection read since the head. */
function bytesIn(req: IncomingMessage, o: RequestOutcome | null): number {
  return bodyBytesRead(req) ?? (o ? Math.max(0, (req.socket?.bytesRead ?? o.readAt) - o.readAt) : 0)
}

/** Zero series for a configuration's routes and issuers, and which configuration is in force. */
function primeMetrics(metrics: Metrics, config: CompiledConfig): void {
  metrics.prime({
    routes: config.router.routes.map((r) => ({ id: r.id, methods: r.methods, protected: r.auth.kind === 'protected', rules: r.auth.kind === 'protected' ? r.auth.claimRules.map((x) => x.id) : [], websocket: r.websocket !== undefined,
      limits: r.rateLimits ? [...r.rateLimits.byAddress, ...r.rateLimits.byIdentity].map((l) => ({ id: l.id, mode: l.onRedisError })) : [],
    })),
    issuers: [...config.issuers.keys()],
    redis: config.cache.redis !== undefined,
    hash: config.hash,
    tracing: config.tracing !== undefined,
    tlsUpstreams: [...new Set(config.router.routes.flatMap((r) => (r.upstream.kind === 'http' && r.upstream.tls ? [r.upstream.id] : [])))],
  })
}

/** Rate-limit decisions into the metrics; a Redis that does not answer is logged at most once a minute per limit. */
function rateLimitObserver(metrics: Metrics, log: FastifyBaseLogger): RateLimitObserver {
  const warned = new Map<string, () => void>()
  return {
    rateLimitDecided: (route, limit, decision) => metrics.rateLimitDecided(route, limit, decision),
    rateLimitStoreSeconds: (seconds) => metrics.rateLimitStoreSeconds(seconds),
    rateLimitStoreFailed(route, limit, mode) {
      metrics.rateLimitStoreFailed(route, limit, mode)
      const key = `${route}\u0000${limit}`
      let report = warned.get(key)
      if (report === undefined) {
        if (warned.size > 10_000) warned.clear()
        warned.set(key, (report = occasionally(60_000, (count) => log.warn({ route, limit, on_redis_error: mode, count }, 'rate limit: Redis did not answer; on_redis_error applied'))))
      }
      report()
    },
  }
}

/** How long a refused client may go on sending its unread body before its connection is cut. */
const LINGER_MS = 2000

/**
 * After the answer to a refused request with an unread body, the connection
 * closes (Connection: close): the client gets the answer, and whatever it
 * still sends is discarded for at most LINGER_MS, never read into memory.
 */
function closeAfter(req: IncomingMessage, res: ServerResponse): void {
  const socket = req.socket as IncomingMessage['socket'] | null
  if (!socket) return
  res.once('finish', () => {
    if (req.complete || socket.destroyed) return
    const timer = setTimeout(() => socket.destroy(), LINGER_MS)
    timer.unref()
    socket.once('close', () => clearTimeout(timer))
  })
}

/** The shared store seen through a key prefix (one prefix per deployment, or per test run). */
function prefixed(store: SharedStore, prefix: string): SharedStore {
  return {
    get: (key, calls) => store.get(prefix + key, calls),
    set: (key, value, ttlMs, calls) => store.set(prefix + key, value, ttlMs, calls),
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
