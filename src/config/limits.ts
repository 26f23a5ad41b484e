import { Type, type Static } from '@sinclair/typebox'
import { parseDuration } from './duration.js'
import type { UpstreamLimits } from '../pipeline/forward/gate.js'

/**
 * The `limits` section: every resource a client can hold is bounded, in size
 * and in time. Its schema and its compile step live here side by side; the
 * defaults are production values, named beside the shape they belong to.
 */
export const LIMIT_DEFAULTS = {
  headerTimeout: '10s',
  requestTimeout: '60s',
  bodyIdleTimeout: '15s',
  keepAliveTimeout: '30s',
  maxHeaderBytes: 16 * 1024,
  maxConnections: 10_000,
  maxBodyBytes: 10 * 1024 * 1024,
  bodyBufferBytes: 64 * 1024,
  bodyBufferTotalBytes: 64 * 1024 * 1024,
  upstreamConnections: 256,
  upstreamQueue: 1024,
  upstreamQueueTimeout: '5s',
} as const

const DURATION = '^[0-9]+(ms|s|m|h)$'
const DURATION_FORMAT = 'a duration: a whole number followed by ms, s, m or h ("500ms", "30s", "10m")'

/** Allowed ranges (ms), checked at compile with a located error: the schema cannot compare durations. */
export const LIMIT_RANGES = {
  header_timeout: [100, 300_000],
  request_timeout: [100, 3_600_000],
  body_idle_timeout: [100, 600_000],
  keep_alive_timeout: [100, 3_600_000],
  queue_timeout: [0, 300_000],
} as const

function duration(defaultValue: string, title: string, range: readonly [number, number]) {
  return Type.String({ pattern: DURATION, default: defaultValue, description: DURATION_FORMAT, title: `${title} (${range[0]}ms to ${range[1] / 1000}s)` })
}

const integer = (defaultValue: number, minimum: number, maximum: number, title: string) => Type.Integer({ default: defaultValue, minimum, maximum, title })

/** Bounds of one upstream's connections; also the defaults of every upstream, under limits.upstream. */
export const UpstreamLimitFields = {
  max_connections: Type.Optional(integer(LIMIT_DEFAULTS.upstreamConnections, 1, 65_536, 'connections to this upstream at most; more requests wait in its queue')),
  max_queue: Type.Optional(integer(LIMIT_DEFAULTS.upstreamQueue, 0, 1_000_000, 'requests waiting for a connection at most; more are answered 503 with Retry-After')),
  queue_timeout: Type.Optional(duration(LIMIT_DEFAULTS.upstreamQueueTimeout, 'longest wait for a connection, then 503 with Retry-After', LIMIT_RANGES.queue_timeout)),
}

export const LimitsSchema = Type.Object(
  {
    header_timeout: Type.Optional(duration(LIMIT_DEFAULTS.headerTimeout, 'time to receive a request head; a connection that sends nothing is closed after it too', LIMIT_RANGES.header_timeout)),
    request_timeout: Type.Optional(duration(LIMIT_DEFAULTS.requestTimeout, 'time to receive a whole request, body included', LIMIT_RANGES.request_timeout)),
    body_idle_timeout: Type.Optional(duration(LIMIT_DEFAULTS.bodyIdleTimeout, 'longest silence while a request body is being received', LIMIT_RANGES.body_idle_timeout)),
    keep_alive_timeout: Type.Optional(duration(LIMIT_DEFAULTS.keepAliveTimeout, 'how long an idle kept-alive connection stays open between requests', LIMIT_RANGES.keep_alive_timeout)),
    max_header_bytes: Type.Optional(integer(LIMIT_DEFAULTS.maxHeaderBytes, 1024, 1024 * 1024, 'largest request head (request line and headers), in bytes; larger is 431')),
    max_connections: Type.Optional(integer(LIMIT_DEFAULTS.maxConnections, 1, 1_000_000, 'client connections open at once on the proxy listener; more are closed at once')),
    max_body_bytes: Type.Optional(integer(LIMIT_DEFAULTS.maxBodyBytes, 0, 2 ** 40, 'largest request body, in bytes, for routes that set none; larger is 413')),
    body_buffer_bytes: Type.Optional(
      integer(LIMIT_DEFAULTS.bodyBufferBytes, 0, 16 * 1024 * 1024, 'bodies up to this size are received whole before an upstream connection is taken (slow senders then hold none); larger ones stream'),
    ),
    body_buffer_total_bytes: Type.Optional(integer(LIMIT_DEFAULTS.bodyBufferTotalBytes, 0, 2 ** 36, 'memory all such buffers may hold together; past it, bodies stream')),
    upstream: Type.Optional(Type.Object(UpstreamLimitFields, { additionalProperties: false, description: 'defaults for every upstream (each may set its own)' })),
  },
  { additionalProperties: false, description: 'bounds on what a client can hold: time, bytes, connections (read at start; per-route and per-upstream ones on reload too)' },
)

export type LimitsConfig = Static<typeof LimitsSchema>
export type UpstreamLimitsConfig = { max_connections?: number; max_queue?: number; queue_timeout?: string }

export interface CompiledLimits {
  readonly headerTimeoutMs: number
  readonly requestTimeoutMs: number
  readonly bodyIdleTimeoutMs: number
  readonly keepAliveTimeoutMs: number
  readonly maxHeaderBytes: number
  readonly maxConnections: number
  readonly maxBodyBytes: number
  readonly bodyBufferBytes: number
  readonly bodyBufferTotalBytes: number
  readonly upstream: CompiledUpstreamLimits
}

export type CompiledUpstreamLimits = UpstreamLimits

type Report = (path: ReadonlyArray<string | number>, message: string) => void

/** A duration within its range, or a located error (and the default). */
function within(value: string | undefined, fallback: string, range: readonly [number, number], path: ReadonlyArray<string | number>, report: Report): number {
  const ms = parseDuration(value ?? fallback)
  if (ms < range[0] || ms > range[1]) {
    report(path, `must be between ${range[0]}ms and ${range[1] / 1000}s, got ${value}`)
    return parseDuration(fallback)
  }
  return ms
}

export function compileUpstreamLimits(c: UpstreamLimitsConfig | undefined, defaults: CompiledUpstreamLimits, at: ReadonlyArray<string | number>, report: Report): CompiledUpstreamLimits {
  if (!c) return defaults
  return Object.freeze({
    maxConnections: c.max_connections ?? defaults.maxConnections,
    maxQueue: c.max_queue ?? defaults.maxQueue,
    queueTimeoutMs: c.queue_timeout === undefined ? defaults.queueTimeoutMs : within(c.queue_timeout, LIMIT_DEFAULTS.upstreamQueueTimeout, LIMIT_RANGES.queue_timeout, [...at, 'queue_timeout'], report),
  })
}

export function compileLimits(c: LimitsConfig | undefined, report: Report): CompiledLimits {
  const at = (key: string) => ['limits', key]
  const headerTimeoutMs = within(c?.header_timeout, LIMIT_DEFAULTS.headerTimeout, LIMIT_RANGES.header_timeout, at('header_timeout'), report)
  const requestTimeoutMs = within(c?.request_timeout, LIMIT_DEFAULTS.requestTimeout, LIMIT_RANGES.request_timeout, at('request_timeout'), report)
  if (requestTimeoutMs < headerTimeoutMs) report(at('request_timeout'), 'must not be shorter than header_timeout (the head is part of the request)')
  const base: CompiledUpstreamLimits = {
    maxConnections: LIMIT_DEFAULTS.upstreamConnections,
    maxQueue: LIMIT_DEFAULTS.upstreamQueue,
    queueTimeoutMs: parseDuration(LIMIT_DEFAULTS.upstreamQueueTimeout),
  }
  return Object.freeze({
    headerTimeoutMs,
    requestTimeoutMs,
    bodyIdleTimeoutMs: within(c?.body_idle_timeout, LIMIT_DEFAULTS.bodyIdleTimeout, LIMIT_RANGES.body_idle_timeout, at('body_idle_timeout'), report),
    keepAliveTimeoutMs: within(c?.keep_alive_timeout, LIMIT_DEFAULTS.keepAliveTimeout, LIMIT_RANGES.keep_alive_timeout, at('keep_alive_timeout'), report),
    maxHeaderBytes: c?.max_header_bytes ?? LIMIT_DEFAULTS.maxHeaderBytes,
    maxConnections: c?.max_connections ?? LIMIT_DEFAULTS.maxConnections,
    maxBodyBytes: c?.max_body_bytes ?? LIMIT_DEFAULTS.maxBodyBytes,
    bodyBufferBytes: c?.body_buffer_bytes ?? LIMIT_DEFAULTS.bodyBufferBytes,
    bodyBufferTotalBytes: c?.body_buffer_total_bytes ?? LIMIT_DEFAULTS.bodyBufferTotalBytes,
    upstream: Object.freeze(compileUpstreamLimits(c?.upstream, base, ['limits', 'upstream'], report)),
  })
}
