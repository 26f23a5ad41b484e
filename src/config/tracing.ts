import { Type, type Static } from '@sinclair/typebox'
import { parseDuration } from './duration.js'
import type { FieldPath } from './errors.js'
import type { TracingSettings } from '../observe/tracing.js'

/**
 * `tracing`: OpenTelemetry traces exported over OTLP. Schema and compile
 * step side by side; what is not in the file comes from the standard SDK
 * environment variables (OTEL_EXPORTER_OTLP_*, OTEL_SERVICE_NAME,
 * OTEL_TRACES_SAMPLER[_ARG], OTEL_BSP_*), then from the defaults. The
 * tracer itself is src/observe/tracing.ts.
 */

const strict = { additionalProperties: false } as const
const Duration = Type.String({ pattern: '^[0-9]+(ms|s|m|h)$' })

export const TRACING_DEFAULTS = {
  endpoint: 'http://localhost:4318/v1/traces',
  protocol: 'http/protobuf',
  serviceName: 'gateway',
  ratio: 1,
  incoming: 'trusted',
  maxQueue: 2048,
  batch: 512,
  delay: '5s',
  exportTimeout: '10s',
} as const

export const TracingSchema = Type.Object(
  {
    enabled: Type.Optional(Type.Boolean({ default: true, description: 'false turns tracing off (as does OTEL_SDK_DISABLED=true)' })),
    endpoint: Type.Optional(Type.String({ pattern: '^https?://', description: 'the OTLP/HTTP traces URL (default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, else http://localhost:4318/v1/traces)' })),
    protocol: Type.Optional(Type.Union([Type.Literal('http/protobuf'), Type.Literal('http/json')], { description: 'default: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf' })),
    headers: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z0-9-]+$' }), Type.String(), { description: 'headers sent with each export (default: OTEL_EXPORTER_OTLP_HEADERS); use ${ENV} for secrets' })),
    service_name: Type.Optional(Type.String({ minLength: 1, description: 'service.name of the spans (default: OTEL_SERVICE_NAME, else gateway)' })),
    sample_ratio: Type.Optional(
      Type.Number({ minimum: 0, maximum: 1, description: 'share of new traces recorded; a request that continues a trace follows its parent\'s decision (default: OTEL_TRACES_SAMPLER[_ARG], else 1)' }),
    ),
    incoming: Type.Optional(
      Type.Union([Type.Literal('trusted'), Type.Literal('always'), Type.Literal('link')], {
        default: TRACING_DEFAULTS.incoming,
        description:
          "a client's traceparent: trusted (continued only from server.trust_proxy addresses; from others a new trace that links to it), always (continued from anyone), link (never continued, always linked)",
      }),
    ),
    queue: Type.Optional(
      Type.Object(
        {
          max_spans: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'spans held for export at most; more are dropped and counted (default: OTEL_BSP_MAX_QUEUE_SIZE, else 2048)' })),
          batch_spans: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000, description: 'spans per export at most (default: OTEL_BSP_MAX_EXPORT_BATCH_SIZE, else 512)' })),
          delay: Type.Optional(Duration),
          export_timeout: Type.Optional(Duration),
        },
        { ...strict, description: 'the bounded export queue: it drops (and counts) rather than blocks or grows; delay (OTEL_BSP_SCHEDULE_DELAY, 5s) between exports, export_timeout (OTEL_BSP_EXPORT_TIMEOUT, 10s) per export' },
      ),
    ),
  },
  { ...strict, description: 'OpenTelemetry tracing over OTLP/HTTP: a server span per request, child spans for authentication, JWKS, introspection, Redis and the upstream; W3C traceparent to every call' },
)

export type TracingConfig = Static<typeof TracingSchema>

type Report = (path: FieldPath, message: string) => void

const SAMPLERS: Readonly<Record<string, { ratio?: number; parentBased: boolean }>> = {
  always_on: { ratio: 1, parentBased: false },
  always_off: { ratio: 0, parentBased: false },
  traceidratio: { parentBased: false },
  parentbased_always_on: { ratio: 1, parentBased: true },
  parentbased_always_off: { ratio: 0, parentBased: true },
  parentbased_traceidratio: { parentBased: true },
}

/** OTEL_EXPORTER_OTLP_HEADERS: comma-separated key=value, values percent-encoded. */
function envHeaders(text: string | undefined): Record<string, string> | undefined {
  if (!text) return undefined
  const out: Record<string, string> = {}
  for (const pair of text.split(',')) {
    const i = pair.indexOf('=')
    if (i <= 0) continue
    try {
      out[decodeURIComponent(pair.slice(0, i).trim())] = decodeURIComponent(pair.slice(i + 1).trim())
    } catch {
      // a malformed pair is left out
    }
  }
  return out
}

function envInt(env: NodeJS.ProcessEnv, name: string, report: Report): number | undefined {
  const v = env[name]
  if (v === undefined || v === '') return undefined
  if (!/^[0-9]{1,9}$/.test(v) || Number(v) < 1) {
    report(['tracing'], `${name}=${v} is not a positive whole number`)
    return undefined
  }
  return Number(v)
}

/**
 * The tracing settings: the file first, then the standard environment
 * variables, then the defaults. Undefined when tracing is off (no `tracing`
 * section, `enabled: false`, or OTEL_SDK_DISABLED=true).
 */
export function compileTracing(config: TracingConfig | undefined, env: NodeJS.ProcessEnv, report: Report): TracingSettings | undefined {
  if (config === undefined || config.enabled === false || env.OTEL_SDK_DISABLED?.toLowerCase() === 'true') return undefined
  const protocolText = config.protocol ?? env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL ?? TRACING_DEFAULTS.protocol
  if (protocolText !== 'http/protobuf' && protocolText !== 'http/json') {
    report(['tracing'], `OTLP protocol "${protocolText}" (from the environment) is not supported: use http/protobuf or http/json (port 4318)`)
  }
  let endpoint = config.endpoint ?? env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
  if (endpoint === undefined && env.OTEL_EXPORTER_OTLP_ENDPOINT) endpoint = env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, '') + '/v1/traces'
  endpoint ??= TRACING_DEFAULTS.endpoint
  try {
    const u = new URL(endpoint)
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme')
  } catch {
    report(['tracing', ...(config.endpoint !== undefined ? ['endpoint'] : [])], `the OTLP endpoint "${endpoint}" is not an http(s) URL`)
  }
  let ratio = config.sample_ratio
  let parentBased = true
  if (ratio === undefined && env.OTEL_TRACES_SAMPLER) {
    const sampler = SAMPLERS[env.OTEL_TRACES_SAMPLER.toLowerCase()]
    if (sampler === undefined) report(['tracing'], `OTEL_TRACES_SAMPLER=${env.OTEL_TRACES_SAMPLER} is not one of ${Object.keys(SAMPLERS).join(', ')}`)
    else {
      parentBased = sampler.parentBased
      ratio = sampler.ratio
      if (ratio === undefined) {
        const arg = Number(env.OTEL_TRACES_SAMPLER_ARG ?? '1')
        if (!(arg >= 0 && arg <= 1)) report(['tracing'], `OTEL_TRACES_SAMPLER_ARG=${env.OTEL_TRACES_SAMPLER_ARG} is not a ratio from 0 to 1`)
        else ratio = arg
      }
    }
  }
  const q = config.queue ?? {}
  const maxQueue = q.max_spans ?? envInt(env, 'OTEL_BSP_MAX_QUEUE_SIZE', report) ?? TRACING_DEFAULTS.maxQueue
  const batch = q.batch_spans ?? envInt(env, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', report) ?? TRACING_DEFAULTS.batch
  if (batch > maxQueue) report(['tracing', 'queue'], `an export batch (${batch}) larger than the queue (${maxQueue}) would never fill`)
  const delayMs = q.delay !== undefined ? parseDuration(q.delay) : (envInt(env, 'OTEL_BSP_SCHEDULE_DELAY', report) ?? parseDuration(TRACING_DEFAULTS.delay))
  const exportTimeoutMs = q.export_timeout !== undefined ? parseDuration(q.export_timeout) : (envInt(env, 'OTEL_BSP_EXPORT_TIMEOUT', report) ?? parseDuration(TRACING_DEFAULTS.exportTimeout))
  if (delayMs < 10 || delayMs > 3_600_000) report(['tracing', 'queue'], 'the export delay must be from 10ms to 1h')
  if (exportTimeoutMs < 10 || exportTimeoutMs > 600_000) report(['tracing', 'queue'], 'the export timeout must be from 10ms to 10m')
  return {
    endpoint,
    protocol: protocolText === 'http/json' ? 'http/json' : 'http/protobuf',
    headers: config.headers ?? envHeaders(env.OTEL_EXPORTER_OTLP_TRACES_HEADERS ?? env.OTEL_EXPORTER_OTLP_HEADERS) ?? {},
    serviceName: config.service_name ?? env.OTEL_SERVICE_NAME ?? TRACING_DEFAULTS.serviceName,
    ratio: ratio ?? TRACING_DEFAULTS.ratio,
    parentBased,
    incoming: config.incoming ?? TRACING_DEFAULTS.incoming,
    maxQueue,
    batch,
    delayMs,
    exportTimeoutMs,
  }
}
