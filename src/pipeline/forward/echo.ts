import type { FastifyReply, FastifyRequest } from 'fastify'
import { rewriteRequestHeaders, type OutgoingHeaderContext } from '../mutate/headers.js'

/** Headers a proxy never passes on: `Connection` and those it names (RFC 9110 §7.6.1). */
export function withoutConnectionHeaders(headers: Record<string, unknown>): Record<string, unknown> {
  const out = { ...headers }
  const named = typeof out.connection === 'string' ? out.connection.toLowerCase().split(',').map((s) => s.trim()) : []
  delete out.connection
  for (const name of named) if (name) delete out[name]
  return out
}

/**
 * The built-in echo responder: answers with what a service behind the route
 * would receive (method, path, query, headers after the gateway's rewrite),
 * so that users can see exactly which identity headers services get.
 */
export function echo(request: FastifyRequest, reply: FastifyReply, path: string, query: string, headers: OutgoingHeaderContext): FastifyReply {
  const outgoing = rewriteRequestHeaders(withoutConnectionHeaders(request.headers), headers)
  return reply
    .header('cache-control', 'no-store')
    .send({ method: request.method, path, query: query.startsWith('?') ? query.slice(1) : query, headers: outgoing })
}
