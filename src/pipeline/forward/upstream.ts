import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Agent, type Dispatcher } from 'undici'
import type { CompiledRoute } from '../../config/compile.js'
import { GatewayError } from '../../errors.js'
import { connectionNamed, rewriteRequestHeaders, type OutgoingHeaderContext } from '../mutate/headers.js'
import { echo } from './echo.js'
import type { Target } from './targets.js'

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT'])
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'])
/** Response headers that belong to the upstream connection, not to the client's. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer'])

/** The path sent upstream: the canonical path that was matched, less the route's strip_prefix. */
export function upstreamPath(route: CompiledRoute, path: string): string {
  if (route.stripPrefix === null) return path
  const rest = path.slice(route.stripPrefix.length)
  return rest === '' ? '/' : rest
}

/** Classifies a transport failure: refused or reset is 502, slow is 504. */
export function upstreamError(error: Error & { code?: string }): GatewayError {
  const codes = [error.code, (error.cause as { code?: string } | undefined)?.code]
  if (codes.some((c) => c !== undefined && TIMEOUT_CODES.has(c))) {
    return new GatewayError('upstream_timeout', 'the upstream did not answer in time', { cause: error })
  }
  if (codes.some((c) => c !== undefined && UNREACHABLE_CODES.has(c))) {
    return new GatewayError('upstream_unavailable', 'the upstream could not be reached', { cause: error })
  }
  return new GatewayError('upstream_failed', 'the upstream request failed', { cause: error })
}

/** The upstream's response headers for the client: hop-by-hop ones dropped (and any its Connection names). */
export function responseHeaders(upstream: IncomingHttpHeaders, requestId: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  const named = connectionNamed(upstream.connection)
  for (const key in upstream) {
    const value = upstream[key]
    if (value === undefined || HOP_BY_HOP.has(key) || named?.includes(key)) continue
    out[key] = value
  }
  out['x-request-id'] = requestId
  return out
}

export interface ForwarderOptions {
  /** Connections per upstream origin. */
  readonly connections?: number
}

/** Writes an error answer for a request whose reply was handed to the forwarder. */
export type FailRequest = (request: FastifyRequest, reply: FastifyReply, error: GatewayError) => void

/**
 * Sends accepted requests to HTTP upstreams through undici, streaming both
 * ways: method, query and body unchanged, headers cleaned then the gateway's
 * added (mutate/headers.ts). Upstream TLS certificates are verified; nothing
 * is retried. The reply is taken over from fastify: the answer streams to the
 * client with backpressure, a client that goes away aborts the upstream
 * request, and a failure before the answer starts becomes a 502/504.
 */
export class Forwarder {
  private readonly agent: Agent

  constructor(options: ForwarderOptions = {}) {
    this.agent = new Agent({ connections: options.connections ?? 256, pipelining: 1, connect: { rejectUnauthorized: true } })
  }

  forward(
    request: FastifyRequest,
    reply: FastifyReply,
    target: Extract<Target, { kind: 'http' }>,
    path: string,
    query: string,
    headers: OutgoingHeaderContext,
    fail: FailRequest,
  ): void {
    const req = request.raw
    const res = reply.raw
    reply.hijack()
    const method = request.method
    const body = method === 'GET' || method === 'HEAD' ? null : Buffer.isBuffer(request.body) ? request.body : req
    let controller: Dispatcher.DispatchController | undefined
    let started = false
    res.once('close', () => {
      if (!res.writableFinished) controller?.abort(new Error('the client went away'))
    })
    const options: Dispatcher.DispatchOptions = {
      origin: target.origin,
      path: target.basePath + path + query,
      method: method as Dispatcher.HttpMethod,
      headers: rewriteRequestHeaders(request.headers, headers),
      body,
      headersTimeout: target.timeoutMs,
      bodyTimeout: target.timeoutMs,
    }
    const onDrain = () => controller?.resume()
    this.agent.dispatch(options, {
      onRequestStart(c) {
        controller = c
      },
      onResponseStart(_c, statusCode, upstreamHeaders) {
        if (statusCode < 200) return // 1xx: the client gets the final answer only
        started = true
        res.writeHead(statusCode, responseHeaders(upstreamHeaders, request.id))
      },
      onResponseData(c, chunk) {
        if (!res.write(chunk)) {
          c.pause()
          res.once('drain', onDrain)
        }
      },
      onResponseEnd() {
        res.end()
      },
      onResponseError(_c, error) {
        if (res.destroyed) return
        if (!started && !res.headersSent) fail(request, reply, upstreamError(error as Error & { code?: string }))
        else res.destroy(error)
      },
    })
  }

  close(): Promise<void> {
    return this.agent.close()
  }
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
  forwarder: Forwarder,
  fail: FailRequest,
): Promise<FastifyReply | undefined> {
  const target = route.upstream
  switch (target.kind) {
    case 'http':
      forwarder.forward(request, reply, target, upstreamPath(route, path), query, headers, fail)
      return undefined
    case 'echo':
      return echo(request, reply, upstreamPath(route, path), query, headers)
    case 'builtin': {
      const answer = await target.respond({
        rawHeaders: request.raw.rawHeaders,
        contentType: request.headers['content-type'],
        body: Buffer.isBuffer(request.body) ? request.body : undefined,
      })
      return reply.code(answer.status).headers(answer.headers).send(answer.body)
    }
  }
}
