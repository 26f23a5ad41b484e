import type { FastifyReply, FastifyRequest } from 'fastify'
import type { CompiledRoute } from '../../config/compile.js'
import { GatewayError } from '../../errors.js'
import { rewriteRequestHeaders, type OutgoingHeaderContext } from '../mutate/headers.js'
import { echo } from './echo.js'
import type { Target } from './targets.js'

const TIMEOUT_CODES = new Set(['FST_REPLY_FROM_GATEWAY_TIMEOUT', 'FST_REPLY_FROM_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT'])
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_SOCKET', 'FST_REPLY_FROM_SERVICE_UNAVAILABLE'])

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

const noRetry = () => null

/**
 * Hands an accepted request to its route's target: an HTTP upstream (the
 * request streams there and the answer back; method, query and body
 * unchanged, headers cleaned, then the gateway's added), the echo responder,
 * or an endpoint the gateway serves itself.
 */
export async function deliver(
  request: FastifyRequest,
  reply: FastifyReply,
  route: CompiledRoute,
  path: string,
  query: string,
  headers: OutgoingHeaderContext,
): Promise<FastifyReply> {
  const target = route.upstream
  switch (target.kind) {
    case 'http':
      return forward(request, reply, target, upstreamPath(route, path), headers)
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

function forward(request: FastifyRequest, reply: FastifyReply, target: Extract<Target, { kind: 'http' }>, path: string, headers: OutgoingHeaderContext): FastifyReply {
  return reply.from(target.base + path, {
    timeout: target.timeoutMs,
    retryDelay: noRetry,
    rewriteRequestHeaders: (_req, outgoing) => rewriteRequestHeaders(outgoing as Record<string, unknown>, headers) as typeof outgoing,
    onError: (r, { error }) => {
      void r.send(upstreamError(error as Error & { code?: string }))
    },
  })
}

