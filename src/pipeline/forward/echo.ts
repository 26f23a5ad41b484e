import type { FastifyReply, FastifyRequest } from 'fastify'
import { rewriteRequestHeaders, type OutgoingHeaderContext } from '../mutate/headers.js'
import { callStarted, withCallHeaders } from '../../observe/calls.js'

/**
 * The built-in echo responder: answers with what a service behind the route
 * would receive (method, path, query, headers after the gateway's rewrite),
 * so that users can see exactly which identity headers services get.
 */
export function echo(request: FastifyRequest, reply: FastifyReply, path: string, query: string, headers: OutgoingHeaderContext): FastifyReply {
  // As a service behind the route would see it: the trace context of the gateway's call too.
  const call = callStarted('upstream', request.method, `echo:${path}`, request.outcome?.trace?.calls)
  const outgoing = withCallHeaders({ host: request.host, ...rewriteRequestHeaders(request.headers, headers) }, call)
  call?.end(200)
  const cors = request.outcome?.cors
  if (cors !== undefined) reply.headers(cors)
  return reply
    .header('cache-control', 'no-store')
    .send({ method: request.method, path, query: query.startsWith('?') ? query.slice(1) : query, headers: outgoing })
}
