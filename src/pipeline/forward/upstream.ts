import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Pool, type Dispatcher } from 'undici'
import { H2Upstream, type UpstreamDispatcher } from './h2-upstream.js'
import { announcesBody, BufferBudget, continueIfExpected, readBody, streamRest, type BodyBounds } from '../body/receive.js'
import { UpstreamGate } from './gate.js'
import type { CompiledRoute } from '../../config/compile.js'
import { GatewayError } from '../../errors.js'
import { connectionNamed, rewriteRequestHeaders, type OutgoingHeaderContext } from '../mutate/headers.js'
import { echo } from './echo.js'
import { rateLimitHeaders } from '../ratelimit/limiter.js'
import type { ClientCertificate } from '../../oauth/client-certificate.js'
import type { StreamPolicy } from './targets.js'
import { callStarted, withCallHeaders } from '../../observe/calls.js'
import { connectOptions, tlsFailure } from './tls.js'
import type { Target } from './targets.js'

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT'])
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'])
/** Response headers that belong to the upstream connection, not to the client's. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer'])

/** Body bytes of each forwarded answer, as relayed to the client (the access log's bytes_out). */
const relayed = new WeakMap<ServerResponse, number>()

export function bodyBytesRelayed(res: ServerResponse): number | undefined {
  return relayed.get(res)
}

/** The path sent upstream: the canonical path that was matched, less the route's strip_prefix. */
export function upstreamPath(route: CompiledRoute, path: string): string {
  if (route.stripPrefix === null) return path
  const rest = path.slice(route.stripPrefix.length)
  return rest === '' ? '/' : rest
}

/** The path as the upstream receives it: its base path, then the route's path less strip_prefix. */
export function sentPath(route: CompiledRoute, path: string): string {
  const target = route.upstream
  return target.kind === 'http' ? target.basePath + upstreamPath(route, path) : upstreamPath(route, path)
}

/** Classifies a transport failure: refused or reset is 502, slow is 504. */
export function upstreamError(error: Error & { code?: string }): GatewayError {
  const tls = tlsFailure(error)
  if (tls !== undefined) return new GatewayError('upstream_tls_failed', 'TLS to the upstream failed', { cause: error, tlsFailure: tls })
  const codes = [error.code, (error.cause as { code?: string } | undefined)?.code]
  if (codes.some((c) => c !== undefined && TIMEOUT_CODES.has(c))) {
    return new GatewayError('upstream_timeout', 'the upstream did not answer in time', { cause: error })
  }
  if (codes.some((c) => c !== undefined && UNREACHABLE_CODES.has(c))) {
    return new GatewayError('upstream_unavailable', 'the upstream could not be reached', { cause: error })
  }
  return new GatewayError('upstream_failed', 'the upstream request failed', { cause: error })
}

/**
 * The upstream's response headers for the client: hop-by-hop ones dropped
 * (and any its Connection names). On a route whose CORS the gateway answers,
 * the upstream's own Access-Control-* headers are dropped too and the
 * gateway's set (its Vary joined to the upstream's).
 */
export function responseHeaders(
  upstream: IncomingHttpHeaders,
  requestId: string,
  cors?: Readonly<Record<string, string>>,
  rateLimit?: Readonly<Record<string, string>>,
  dpopNonce?: string,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  const named = connectionNamed(upstream.connection)
  for (const key in upstream) {
    const value = upstream[key]
    if (value === undefined || HOP_BY_HOP.has(key) || named?.includes(key)) continue
    if (cors !== undefined && key.startsWith('access-control-')) continue
    out[key] = value
  }
  if (cors !== undefined) {
    for (const key in cors) out[key] = cors[key]!
    if (upstream.vary !== undefined) out.vary = `${upstream.vary}, ${cors.vary}`
  }
  // The gateway's limits join the upstream's own (both fields are lists).
  if (rateLimit !== undefined) {
    for (const key in rateLimit) out[key] = typeof upstream[key] === 'string' ? `${upstream[key]}, ${rateLimit[key]}` : rateLimit[key]!
  }
  if (dpopNonce !== undefined) out['dpop-nonce'] = dpopNonce
  out['x-request-id'] = requestId
  return out
}

export interface ForwarderOptions {
  /** Bodies up to this size are received whole before an upstream connection is taken. */
  readonly bufferBytes?: number
  /** The memory such buffers may hold together. */
  readonly bufferTotalBytes?: number
}

/** Writes an error answer for a request whose reply was handed to the forwarder. */
export type FailRequest = (request: FastifyRequest, reply: FastifyReply, error: GatewayError) => void

/** What the forwarder needs of the request body. */
export interface BodyPlan {
  readonly bounds: BodyBounds
  /** The body, when the pipeline already read it (form bodies it checked). */
  readonly read?: Buffer | undefined
  /** Sees every chunk before it goes upstream; throwing stops the request (multipart fields it checks). */
  readonly inspect?: ((chunk: Buffer) => void) | undefined
}

interface UpstreamLane {
  readonly key: string
  readonly pool: UpstreamDispatcher
  readonly gate: UpstreamGate
}

/**
 * Sends accepted requests to HTTP upstreams through undici, streaming both
 * ways: method, query and body unchanged, headers cleaned then the gateway's
 * added (mutate/headers.ts). Each upstream has its own connection pool behind
 * a gate (gate.ts): bounded connections, a bounded queue, a bounded wait.
 * A small body is received whole before a connection is taken, so that a
 * slow sender holds none; a larger one streams, bounded in bytes and in idle
 * time. Upstream TLS certificates are verified; nothing is retried. The reply
 * is taken over from fastify: the answer streams to the client with
 * backpressure, a client that goes away aborts the upstream request, and a
 * failure before the answer starts becomes a 502/503/504.
 */
export class Forwarder {
  private readonly lanes = new Map<string, UpstreamLane>()
  /** The lane of each compiled target, found without building its key per request. */
  private readonly laneOf = new WeakMap<object, UpstreamLane>()
  private readonly budget: BufferBudget
  private readonly bufferBytes: number

  constructor(options: ForwarderOptions = {}) {
    this.bufferBytes = options.bufferBytes ?? 64 * 1024
    this.budget = new BufferBudget(options.bufferTotalBytes ?? 64 * 1024 * 1024)
  }

  private lane(target: Extract<Target, { kind: 'http' }>): UpstreamLane {
    const known = this.laneOf.get(target)
    if (known !== undefined && this.lanes.get(known.key) === known) return known
    const key = `${target.id}\u0000${target.origin}\u0000${target.limits.maxConnections}\u0000${target.limits.maxQueue}\u0000${target.limits.queueTimeoutMs}\u0000${target.tls?.fingerprint ?? ''}\u0000${target.http2 === true}`
    let lane = this.lanes.get(key)
    if (lane === undefined) {
      // New TLS material (a rotated certificate) makes a new pool; the old one closes once its requests end (retain).
      // HTTP/2 upstreams (gRPC): node:http2, which delivers trailers (undici's HTTP/2 client drops them).
      const pool: UpstreamDispatcher =
        target.http2 === true ? new H2Upstream(target.origin, connectOptions(target.tls)) : new Pool(target.origin, { connections: target.limits.maxConnections, pipelining: 1, connect: connectOptions(target.tls) })
      lane = { key, pool, gate: new UpstreamGate(target.limits) }
      this.lanes.set(key, lane)
    }
    this.laneOf.set(target, lane)
    return lane
  }

  /** Closes (gracefully) the pools of upstreams no longer in the configuration. */
  retain(targets: Iterable<Target>): void {
    const keep = new Set<string>()
    for (const t of targets) if (t.kind === 'http') keep.add(this.lane(t).key)
    for (const [key, lane] of this.lanes) {
      if (keep.has(key)) continue
      this.lanes.delete(key)
      void lane.pool.close().catch(() => undefined)
    }
  }

  /** The body to send: already read, received whole (small), or streamed; and what to give back once sent. */
  private async payload(req: IncomingMessage, res: ServerResponse, plan: BodyPlan): Promise<{ body: Buffer | AsyncIterable<Buffer> | null; done: () => void }> {
    const nothing = () => undefined
    if (plan.read !== undefined) return { body: plan.read, done: nothing }
    if (!announcesBody(req)) return { body: null, done: nothing }
    const declared = req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length'])
    const share = Math.min(declared ?? this.bufferBytes, this.bufferBytes)
    if (this.bufferBytes > 0 && (declared === undefined || declared <= this.bufferBytes) && this.budget.take(share)) {
      const done = () => this.budget.give(share)
      try {
        const got = await readBody(req, res, plan.bounds, this.bufferBytes + 1)
        if (got.ended) {
          if (plan.inspect) for (const chunk of got.chunks) plan.inspect(chunk)
          return { body: Buffer.concat(got.chunks, got.bytes), done }
        }
        return { body: inspected(streamRest(req, got, plan.bounds), plan.inspect), done }
      } catch (err) {
        done()
        throw err
      }
    }
    continueIfExpected(req, res)
    return { body: inspected(streamRest(req, { chunks: [], bytes: 0, ended: false }, plan.bounds), plan.inspect), done: nothing }
  }

  async forward(
    request: FastifyRequest,
    reply: FastifyReply,
    target: Extract<Target, { kind: 'http' }>,
    path: string,
    query: string,
    headers: OutgoingHeaderContext,
    plan: BodyPlan,
    fail: FailRequest,
    stream?: StreamPolicy,
    deadlineMs?: number,
  ): Promise<void> {
    const req = request.raw
    const res = reply.raw
    reply.hijack()
    const method = request.method
    let controller: Dispatcher.DispatchController | undefined
    let started = false
    let finished = false
    let sent = 0
    let release: (() => void) | undefined
    let payloadDone: (() => void) | undefined
    const settle = () => {
      if (finished) return
      finished = true
      release?.()
      payloadDone?.()
    }
    res.once('close', () => {
      if (!res.writableFinished) controller?.abort(new Error('the client went away'))
      settle()
    })
    const lane = this.lane(target)
    let body: Buffer | AsyncIterable<Buffer> | null = plan.read ?? null
    try {
      // The common case (no body, a free connection) takes no promise.
      if (plan.read === undefined && announcesBody(req)) {
        const prepared = await this.payload(req, res, plan)
        body = prepared.body
        payloadDone = prepared.done
      }
      release = lane.gate.tryAcquire() ?? (await lane.gate.acquire())
    } catch (err) {
      settle()
      if (!res.destroyed) fail(request, reply, asPipelineError(err))
      return
    }
    if (res.destroyed) return settle()
    // Traced: a CLIENT span for the call, its traceparent in place of any the client sent.
    const call = callStarted('upstream', method, target.base + path, request.outcome?.trace?.calls)
    const options: Dispatcher.DispatchOptions = {
      path: target.basePath + path + query,
      method: method as Dispatcher.HttpMethod,
      headers: withCallHeaders(rewriteRequestHeaders(request.headers, headers), call),
      // undici streams an async iterable; its types only name Readable.
      body: body as Dispatcher.DispatchOptions['body'],
      headersTimeout: deadlineMs !== undefined ? Math.min(deadlineMs, target.timeoutMs) : target.timeoutMs,
      bodyTimeout: stream?.idleMs ?? target.timeoutMs,
    }
    // A gRPC deadline (grpc-timeout): past it the call ends with DEADLINE_EXCEEDED, in trailers once the answer began.
    if (deadlineMs !== undefined) {
      const deadline = setTimeout(() => {
        if (finished) return
        if (!started) return controller?.abort(Object.assign(new Error('the gRPC deadline passed'), { code: 'UND_ERR_HEADERS_TIMEOUT' }))
        relayed.set(res, sent)
        settle()
        if (!res.writableEnded) {
          res.addTrailers({ 'grpc-status': '4', 'grpc-message': 'deadline exceeded' })
          res.end()
        }
        controller?.abort(new Error('the gRPC deadline passed'))
      }, deadlineMs)
      deadline.unref()
      res.once('close', () => clearTimeout(deadline))
    }
    // A long answer may stream this long in all, then it ends (an SSE client reconnects).
    let age: NodeJS.Timeout | undefined
    if (stream?.maxMs !== undefined) {
      age = setTimeout(() => {
        if (!started) return controller?.abort(new Error('the answer took too long'))
        // Ended first, so that the abort finds a complete answer (onResponseError leaves it alone).
        relayed.set(res, sent)
        settle()
        res.end()
        controller?.abort(new Error('the answer streamed for its longest'))
      }, stream.maxMs)
      age.unref()
      res.once('close', () => clearTimeout(age))
    }
    const onDrain = () => controller?.resume()
    lane.pool.dispatch(options, {
      onRequestStart(c) {
        controller = c
      },
      onResponseStart(_c, statusCode, upstreamHeaders) {
        if (statusCode < 200) return // 1xx: the client gets the final answer only
        started = true
        call?.end(statusCode)
        res.writeHead(statusCode, responseHeaders(upstreamHeaders, request.id, request.outcome?.cors, rateLimitHeaders(request.outcome?.rateLimit), request.outcome?.dpopNonce))
        // A stream's head goes at once (an EventSource opens on it); other heads leave with the first chunk.
        if (stream !== undefined || String(upstreamHeaders['content-type']).startsWith('text/event-stream')) res.flushHeaders()
      },
      onResponseData(c, chunk) {
        sent += chunk.length
        if (!res.write(chunk)) {
          c.pause()
          res.once('drain', onDrain)
        }
      },
      onResponseEnd(_c, trailers) {
        relayed.set(res, sent)
        settle()
        // Trailers (gRPC's grpc-status, grpc-message) go on to the client (HTTP/2, or chunked HTTP/1.1).
        if (trailers !== undefined && Object.keys(trailers).length > 0 && !res.writableEnded) res.addTrailers(trailers as Record<string, string>)
        res.end()
      },
      onResponseError(_c, error) {
        if (!started) call?.end(undefined, error)
        relayed.set(res, sent)
        settle()
        // Ended on purpose (stream.max_duration): the answer is complete as sent.
        if (res.destroyed || res.writableEnded) return
        if (!started && !res.headersSent) fail(request, reply, asPipelineError(error))
        else res.destroy(error)
      },
    })
  }

  async close(): Promise<void> {
    await Promise.all([...this.lanes.values()].map((l) => l.pool.close().catch(() => undefined)))
    this.lanes.clear()
  }
}

/** The chunks, each shown to `inspect` before it goes on. */
function inspected(chunks: AsyncGenerator<Buffer>, inspect: ((chunk: Buffer) => void) | undefined): AsyncIterable<Buffer> {
  if (!inspect) return chunks
  return (async function* () {
    for await (const chunk of chunks) {
      inspect(chunk)
      yield chunk
    }
  })()
}

/** A failure on the way upstream: the pipeline's own (413, 408, 503…) as it is, a transport failure classified. */
function asPipelineError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err
  const cause = (err as { cause?: unknown }).cause
  if (cause instanceof GatewayError) return cause
  return upstreamError(err as Error & { code?: string })
}

/**
 * Hands an accepted request to its route's target: an HTTP upstream, the
 * echo responder, or an endpoint the gateway serves itself.
 */
export async function deliver(
  request: FastifyRequest,
  reply: FastifyReply,
  route: CompiledRoute,
  path: string,
  query: string,
  headers: OutgoingHeaderContext,
  body: BodyPlan,
  forwarder: Forwarder,
  fail: FailRequest,
  certificate?: () => ClientCertificate | undefined,
): Promise<FastifyReply | undefined> {
  const target = route.upstream
  switch (target.kind) {
    case 'http':
      await forwarder.forward(request, reply, target, upstreamPath(route, path), query, headers, body, fail, route.stream, grpcDeadline(request.headers))
      return undefined
    case 'echo':
      // Read (bounded like any body, then dropped), so that the echo answers as an upstream behind the same limits would.
      if (body.read === undefined && announcesBody(request.raw)) await readWhole(request, reply, body)
      return echo(request, reply, upstreamPath(route, path), query, headers)
    case 'builtin': {
      // Their bodies (forms, Security Event Tokens) are read here, bounded; each endpoint checks the type.
      const form = body.read ?? (announcesBody(request.raw) ? await readWhole(request, reply, body) : undefined)
      const answer = await target.respond({
        rawHeaders: request.raw.rawHeaders,
        contentType: request.headers['content-type'],
        body: form,
        address: request.ip,
        // As the client sent it: scheme and host after trusted proxies (DPoP's htu at the token endpoint).
        uri: request.host ? `${request.protocol}://${request.host}${(request.raw.url ?? '/').split('?', 1)[0]}` : undefined,
        certificate,
      })
      return reply.code(answer.status).headers(answer.headers).send(answer.body)
    }
  }
}

const GRPC_UNITS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 }

/** The deadline a gRPC call carries (grpc-timeout: up to 8 digits and a unit), in ms. */
export function grpcDeadline(headers: FastifyRequest['headers']): number | undefined {
  const value = headers['grpc-timeout']
  if (typeof value !== 'string') return undefined
  const m = /^([0-9]{1,8})([HMSmun])$/.exec(value)
  if (!m) return undefined
  return Math.max(1, Math.ceil(Number(m[1]) * GRPC_UNITS[m[2]!]!))
}

/** A whole body, bounded as the plan says. */
export async function readWhole(request: FastifyRequest, reply: FastifyReply, plan: BodyPlan): Promise<Buffer> {
  const got = await readBody(request.raw, reply.raw, plan.bounds)
  return Buffer.concat(got.chunks, got.bytes)
}
