import type { FastifyReply, FastifyRequest } from 'fastify'
import { rewriteRequestHeaders, type OutgoingHeaderContext } from '../mutate/headers.js'

/**
 * The built-in echo responder: answers with what a service behind the route
 * would receive (method, path, query, headers after the gateway's rewrite),
 * so that users can see exactly which identity headers services get.
 */
export function echo(request: FastifyRequest, reply: FastifyReply, path: string, query: string, headers: OutgoingHeaderContext): FastifyReply {
  const outgoing = { host: request.host, ...rewriteRequestHeaders(request.headers, headers) }
  const cors = request.outcome?.cors
  if (cors !== undefined) reply.headers(cors)
  return reply
    .header('cache-control', 'no-store')
    .send({ method: request.method, path, query: query.startsWith('?') ? query.slice(1) : query, headers: outgoing })
}
