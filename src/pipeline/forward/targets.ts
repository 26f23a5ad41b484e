import type { EndpointRequest, EndpointResponse } from '../../authorization-server/server.js'
import type { UpstreamLimits } from './gate.js'
import type { UpstreamAssertion } from '../assert/identity-assertion.js'
import type { UpstreamTls } from './tls.js'

/** Where a route sends what it accepts. */
export type Target =
  | {
      readonly kind: 'http'
      readonly id: string
      /** Origin plus base path, without trailing slash: "http://orders:8080/v2". */
      readonly base: string
      /** "http://orders:8080" */
      readonly origin: string
      /** "/v2", or "" */
      readonly basePath: string
      readonly timeoutMs: number
      readonly preserveHost: boolean
      /** HTTP/2 to the upstream (h2 over TLS, h2c in clear), for gRPC services. */
      readonly http2?: boolean
      /** Connections, queue and queue wait to this upstream. */
      readonly limits: UpstreamLimits
      /** The signed identity assertion it gets, when configured. */
      readonly assertion?: UpstreamAssertion | undefined
      /** CA, client certificate, name and pins, for https:// upstreams that set them. */
      readonly tls?: UpstreamTls | undefined
    }
  | { readonly kind: 'echo'; readonly id: string; readonly assertion?: UpstreamAssertion | undefined }
  | {
      /** An endpoint the gateway serves itself (authorization server, metadata). */
      readonly kind: 'builtin'
      readonly id: string
      respond(request: EndpointRequest): EndpointResponse | Promise<EndpointResponse>
    }

/** A route's bounds on long answers (config/stream.ts). */
export interface StreamPolicy {
  /** Silence allowed between chunks, in ms (undefined: the upstream's timeout). */
  readonly idleMs: number | undefined
  /** The whole answer, in ms (undefined: unbounded but by idleness). */
  readonly maxMs: number | undefined
}
