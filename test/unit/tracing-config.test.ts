import { describe, expect, it } from 'vitest'
import { compileConfigText } from '../../src/config/index.js'
import { ConfigError } from '../../src/config/errors.js'

const BASE = `
upstreams: { e: { echo: true } }
routes: [{ id: r, match: { path: /r }, upstream: e, auth: public }]
`
const compile = (tracing: string, env: NodeJS.ProcessEnv = {}) => compileConfigText(`${BASE}${tracing}\n`, 'tracing.yaml', { env })

async function refused(tracing: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  try {
    await compile(tracing, env)
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    const issues = (err as ConfigError).issues
    for (const i of issues) expect(i.path).toMatch(/^tracing/)
    return issues.map((i) => i.message).join('\n')
  }
  throw new Error('accepted')
}

describe('tracing settings', () => {
  it('off without a tracing section, with enabled: false, or with OTEL_SDK_DISABLED=true', async () => {
    expect((await compile('', { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).tracing).toBeUndefined()
    expect((await compile('tracing: { enabled: false }')).tracing).toBeUndefined()
    expect((await compile('tracing: {}', { OTEL_SDK_DISABLED: 'true' })).tracing).toBeUndefined()
  })

  it('defaults: OTLP/protobuf to localhost:4318, service gateway, every trace, parent-based, trusted incoming, bounded queue', async () => {
    expect((await compile('tracing: {}')).tracing).toEqual({
      endpoint: 'http://localhost:4318/v1/traces',
      protocol: 'http/protobuf',
      headers: {},
      serviceName: 'gateway',
      ratio: 1,
      parentBased: true,
      incoming: 'trusted',
      maxQueue: 2048,
      batch: 512,
      delayMs: 5000,
      exportTimeoutMs: 10000,
    })
  })

  it('the standard variables fill what the file leaves out; the file wins', async () => {
    const env = {
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_HEADERS: 'api-key=s%20ecret,x-team=edge',
      OTEL_SERVICE_NAME: 'edge',
      OTEL_TRACES_SAMPLER: 'traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0.25',
      OTEL_BSP_MAX_QUEUE_SIZE: '100',
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '10',
      OTEL_BSP_SCHEDULE_DELAY: '250',
      OTEL_BSP_EXPORT_TIMEOUT: '3000',
    }
    expect((await compile('tracing: {}', env)).tracing).toMatchObject({
      endpoint: 'http://collector:4318/v1/traces',
      protocol: 'http/json',
      headers: { 'api-key': 's ecret', 'x-team': 'edge' },
      serviceName: 'edge',
      ratio: 0.25,
      parentBased: false,
      maxQueue: 100,
      batch: 10,
      delayMs: 250,
      exportTimeoutMs: 3000,
    })
    expect((await compile('tracing: { endpoint: "https://otlp.example/v1/traces", sample_ratio: 0.5, service_name: gw }', { ...env, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://other/v1/traces' })).tracing).toMatchObject({
      endpoint: 'https://otlp.example/v1/traces',
      ratio: 0.5,
      parentBased: true,
      serviceName: 'gw',
    })
    expect((await compile('tracing: {}', { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:4318/custom' })).tracing?.endpoint).toBe('http://t:4318/custom')
    expect((await compile('tracing: {}', { OTEL_TRACES_SAMPLER: 'parentbased_always_off' })).tracing).toMatchObject({ ratio: 0, parentBased: true })
  })

  it.each([
    ['gRPC from the environment', 'tracing: {}', { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }, /"grpc" \(from the environment\) is not supported/],
    ['an unknown sampler', 'tracing: {}', { OTEL_TRACES_SAMPLER: 'jaeger_remote' }, /OTEL_TRACES_SAMPLER=jaeger_remote is not one of/],
    ['a sampler ratio out of range', 'tracing: {}', { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '2' }, /not a ratio from 0 to 1/],
    ['a queue size that is no number', 'tracing: {}', { OTEL_BSP_MAX_QUEUE_SIZE: 'lots' }, /OTEL_BSP_MAX_QUEUE_SIZE=lots is not a positive whole number/],
    ['a batch larger than the queue', 'tracing: { queue: { max_spans: 10, batch_spans: 20 } }', {}, /larger than the queue/],
    ['an endpoint that is no http URL', 'tracing: {}', { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'collector:4318' }, /is not an http\(s\) URL/],
    ['a delay out of range', 'tracing: { queue: { delay: 0ms } }', {}, /export delay must be from 10ms to 1h/],
  ])('refuses %s, located at tracing', async (_name, tracing, env, message) => {
    expect(await refused(tracing, env)).toMatch(message)
  })
})
