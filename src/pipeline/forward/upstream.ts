import type { FastifyReply, FastifyRequest } from 'fastify'
import type { CompiledRoute } from '../../config/compile.js'
import { GatewayError } from '../../errors.js'
import { rewriteRequestHeaders, type OutgoingHeaderContext } from '../mutate/headers.js'

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
 * Streams the request to the route's upstream and the answer back. Method,
 * query and body go unchanged; headers are cleaned, then the gateway's added.
 */
export function forward(request: FastifyRequest, reply: FastifyReply, route: CompiledRoute, path: string, headers: OutgoingHeaderContext): FastifyReply {
  return reply.from(route.upstream.base + upstreamPath(route, path), {
    timeout: route.upstream.timeoutMs,
    retryDelay: noRetry,
    rewriteRequestHeaders: (_req, outgoing) => rewriteRequestHeaders(outgoing as Record<string, unknown>, headers) as typeof outgoing,
    onError: (r, { error }) => {
      void r.send(upstreamError(error as Error & { code?: string }))
    },
  })
}

