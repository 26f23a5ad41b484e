import { Type, type Static } from '@sinclair/typebox'
import type { FieldPath } from './errors.js'

/**
 * `server.http2`: HTTP/2 on the HTTPS listener (ALPN h2, HTTP/1.1 beside it)
 * and, when asked, cleartext h2c with prior knowledge on a listener of its
 * own (meshes, gRPC clients inside the cluster). The same pipeline serves
 * both; bounds on streams and on stream resets (CVE-2023-44487, "rapid
 * reset") per connection. Schema and compile step side by side.
 */

const strict = { additionalProperties: false } as const

export const HTTP2_DEFAULTS = { maxConcurrentStreams: 100, maxResetsPerSecond: 100 } as const

export const Http2Schema = Type.Object(
  {
    tls: Type.Optional(Type.Boolean({ default: true, description: 'offer h2 by ALPN on server.tls (HTTP/1.1 stays offered beside it)' })),
    cleartext: Type.Optional(Type.Boolean({ default: false, description: 'the plain listener (server.listen) also accepts h2c with prior knowledge: a connection that opens with the HTTP/2 preface is served in HTTP/2, others in HTTP/1.1' })),
    cleartext_listen: Type.Optional(Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$', description: 'host:port of an h2c listener (HTTP/2 with prior knowledge, no TLS): for meshes and gRPC clients inside the cluster' })),
    max_concurrent_streams: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, default: HTTP2_DEFAULTS.maxConcurrentStreams, description: 'streams a connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS)' })),
    max_resets_per_second: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 100_000, default: HTTP2_DEFAULTS.maxResetsPerSecond, description: 'streams a connection may reset per second; past it the connection is closed (GOAWAY ENHANCE_YOUR_CALM): the rapid-reset attack, CVE-2023-44487' }),
    ),
  },
  { ...strict, description: 'HTTP/2: h2 on the HTTPS listener, h2c on a listener of its own; the header list is bounded by limits.max_header_bytes' },
)

export interface CompiledHttp2 {
  readonly tls: boolean
  /** The plain listener also takes h2c with prior knowledge. */
  readonly cleartextOnPlain: boolean
  readonly cleartext: { readonly host: string; readonly port: number } | undefined
  readonly maxConcurrentStreams: number
  readonly maxResetsPerSecond: number
}

export function compileHttp2(c: Static<typeof Http2Schema> | undefined, hasTls: boolean, hasPlain: boolean, splitListen: (listen: string) => { host: string; port: number }, report: (path: FieldPath, message: string) => void): CompiledHttp2 | undefined {
  if (c === undefined) return undefined
  const tls = c.tls ?? true
  if (tls && !hasTls) report(['server', 'http2', 'tls'], 'h2 by ALPN needs the HTTPS listener (server.tls); set tls: false for h2c alone')
  const cleartext = c.cleartext_listen === undefined ? undefined : splitListen(c.cleartext_listen)
  if (cleartext && cleartext.port > 65535) report(['server', 'http2', 'cleartext_listen'], `port ${cleartext.port} is out of range (0 to 65535)`)
  if (!tls && cleartext === undefined && c.cleartext !== true) report(['server', 'http2'], 'HTTP/2 on no listener: keep tls, or set cleartext or cleartext_listen')
  if (c.cleartext === true && !hasPlain) report(['server', 'http2', 'cleartext'], 'h2c on the plain listener needs one, and server.listen is false')
  return Object.freeze({
    tls,
    cleartextOnPlain: c.cleartext ?? false,
    cleartext,
    maxConcurrentStreams: c.max_concurrent_streams ?? HTTP2_DEFAULTS.maxConcurrentStreams,
    maxResetsPerSecond: c.max_resets_per_second ?? HTTP2_DEFAULTS.maxResetsPerSecond,
  })
}
