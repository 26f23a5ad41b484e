import { createServer, type Server, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { startIntrospectionServer, type IntrospectionServer } from '../helpers/introspection-server.js'
import { bearer, send, startEchoUpstream, type Echoed, type Listening } from '../helpers/servers.js'
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.js'
import { deletePrefix, SHARED_REDIS_URL, uniquePrefix } from '../helpers/redis.js'

// OpenTelemetry through a running gateway: a loopback OTLP receiver collects
// the spans; a real upstream, JWKS, introspection endpoint and Redis are the
// calls traced; the tree, attributes and propagation are checked.

const ISS = 'https://trace.test.example'
const CLIENT_TRACE = '0af7651916cd43dd8448eb211c80319c'
const CLIENT_SPAN = 'b7ad6b7169203331'
const traceparent = (flags = '01') => `00-${CLIENT_TRACE}-${CLIENT_SPAN}-${flags}`

let key: TestKey
let jwks: JwksServer
let as: IntrospectionServer
let upstream: Listening & { received: Echoed[] }
let otlp: OtlpReceiver
const prefix = uniquePrefix('trace')
const gateways: TestGateway[] = []

beforeAll(async () => {
  key = await makeKey('ES256')
  jwks = await startJwksServer([key.publicJwk])
  as = await startIntrospectionServer()
  upstream = await startEchoUpstream()
  otlp = await startOtlpReceiver()
})
afterAll(async () => {
  for (const g of gateways) await g.close()
  await deletePrefix(SHARED_REDIS_URL, prefix)
  await Promise.all([jwks?.close(), as?.close(), upstream?.close(), otlp?.close()])
})

function config(tracing: string, server = ''): string {
  return `
${server}
cache: { redis: { url: "${SHARED_REDIS_URL}", key_prefix: "${prefix}" } }
${tracing}
upstreams: { api: { url: "${upstream.url}/base" } }
issuers:
  - { id: corp, issuer: ${ISS}, jwks_uri: "${jwks.jwksUri}", audiences: [api], algorithms: [ES256], jwks: { cooldown: 0s } }
  - id: opaque
    issuer: ${ISS}/opaque
    audiences: [api]
    introspection: { endpoint: "${as.endpoint}", client_id: gateway, client_secret: "s3cret: +/%" }
routes:
  - id: orders
    match: { path: "/orders/:id" }
    upstream: api
    auth: { issuers: [corp], scopes: { all_of: [read] } }
    rate_limits: [{ id: per-client, requests: 1000, per: 1m, by: [client_id] }]
  - { id: opaque, match: { path: /opaque }, upstream: api, auth: { issuers: [opaque], scopes: { all_of: [read] } } }
`
}

async function gateway(yaml: string, env?: NodeJS.ProcessEnv): Promise<TestGateway> {
  const g = await startGateway(yaml, {}, env ? { env } : {})
  gateways.push(g)
  return g
}

const token = (claims: Record<string, unknown> = {}) => sign(key, { iss: ISS, aud: 'api', sub: 'u', client_id: 'c', scope: 'read', ...claims })
const lastUpstream = () => upstream.received.at(-1)!
const children = (of: ReceivedSpan) => otlp.spans.filter((s) => s.parentSpanId === of.spanId && s.traceId === of.traceId)

describe('a traced request', () => {
  let trusted: TestGateway
  beforeAll(async () => {
    trusted = await gateway(config('tracing: { endpoint: "' + otlp.endpoint + '", protocol: http/json, queue: { delay: 20ms } }', 'server: { trust_proxy: [loopback] }'))
    for (let i = 0; i < 100 && !trusted.gateway.sharedStore?.up; i++) await new Promise((r) => setTimeout(r, 20))
  })

  it('continues a trusted proxy\'s trace; the tree is server → authenticate → JWKS, server → Redis, server → upstream, and the upstream gets the trace', async () => {
    // A key the gateway has not seen yet: the request itself fetches the key set.
    const rotated = await makeKey('ES256')
    jwks.keys = [key.publicJwk, rotated.publicJwk]
    const t = await sign(rotated, { iss: ISS, aud: 'api', sub: 'u', client_id: 'c', scope: 'read' })
    const res = await send(trusted.url, { path: '/orders/7', headers: [bearer(t), ['traceparent', traceparent()], ['tracestate', 'vendor=x']] })
    expect(res.status).toBe(200)
    const server = await otlp.waitFor((s) => s.kind === 2 && s.traceId === CLIENT_TRACE && s.attributes['http.route'] === '/orders/:id')
    expect(server.parentSpanId).toBe(CLIENT_SPAN)
    expect(server.name).toBe('GET /orders/:id')
    expect(server.service).toBe('gateway')
    expect(server.attributes).toMatchObject({ 'http.request.method': 'GET', 'url.path': '/orders/7', 'gateway.route.id': 'orders', 'http.response.status_code': 200, 'gateway.decision': 'allow', 'client.address': '127.0.0.1' })
    const authn = await otlp.waitFor((s) => s.name === 'authenticate' && s.parentSpanId === server.spanId)
    expect(authn.kind).toBe(1)
    const jwksCall = await otlp.waitFor((s) => s.name === 'GET jwks' && s.parentSpanId === authn.spanId)
    expect(jwksCall).toMatchObject({ kind: 3, attributes: { 'http.response.status_code': 200, 'url.full': jwks.jwksUri } })
    const redis = await otlp.waitFor((s) => s.attributes['db.system.name'] === 'redis' && s.parentSpanId === server.spanId)
    expect(redis.name).toBe('EVALSHA')
    const call = await otlp.waitFor((s) => s.name === 'GET upstream' && s.parentSpanId === server.spanId)
    expect(call.attributes).toMatchObject({ 'http.response.status_code': 200, 'server.address': '127.0.0.1', 'url.full': `${upstream.url}/base/orders/7` })
    // The upstream gets the gateway's call as parent, in the client's trace; the client's tracestate is kept.
    expect(lastUpstream().headers.traceparent).toBe(`00-${CLIENT_TRACE}-${call.spanId}-01`)
    expect(lastUpstream().headers.tracestate).toBe('vendor=x')
    // The access log line carries the ids.
    const line = await trusted.requestLog(res.headers['x-request-id'])
    expect(line).toMatchObject({ trace_id: CLIENT_TRACE, span_id: server.spanId })
    expect(children(server).map((s) => s.name).sort()).toEqual(['EVALSHA', 'GET upstream', 'authenticate'])
  })

  it('a refused call: the server span says why, the authenticate span failed, nothing went upstream', async () => {
    const before = upstream.received.length
    const res = await send(trusted.url, { path: '/orders/8', headers: [bearer(await token({ aud: 'elsewhere' })), ['traceparent', `00-${'1'.repeat(32)}-${CLIENT_SPAN}-01`]] })
    expect(res.status).toBe(401)
    const server = await otlp.waitFor((s) => s.kind === 2 && s.traceId === '1'.repeat(32))
    expect(server.attributes).toMatchObject({ 'gateway.decision': 'deny', 'gateway.reason': 'audience_invalid', 'http.response.status_code': 401 })
    const authn = await otlp.waitFor((s) => s.name === 'authenticate' && s.parentSpanId === server.spanId)
    expect(authn.status.code).toBe(2)
    expect(authn.attributes['gateway.reason']).toBe('audience_invalid')
    expect(upstream.received.length).toBe(before)
    await new Promise((r) => setTimeout(r, 100))
    expect(children(server).map((s) => s.name)).toEqual(['authenticate'])
  })

  it('introspection and the shared cache are spans of the request too', async () => {
    const opaque = `opaque-${Math.random()}`
    as.tokens.set(opaque, { active: true, iss: `${ISS}/opaque`, aud: 'api', scope: 'read', client_id: 'o' })
    const res = await send(trusted.url, { path: '/opaque', headers: [bearer(opaque), ['traceparent', `00-${'2'.repeat(32)}-${CLIENT_SPAN}-01`]] })
    expect(res.status).toBe(200)
    const server = await otlp.waitFor((s) => s.kind === 2 && s.traceId === '2'.repeat(32))
    const authn = await otlp.waitFor((s) => s.name === 'authenticate' && s.parentSpanId === server.spanId)
    const intro = await otlp.waitFor((s) => s.name === 'POST introspection' && s.parentSpanId === authn.spanId)
    expect(intro.attributes).toMatchObject({ 'url.full': as.endpoint, 'http.response.status_code': 200 })
    await otlp.waitFor((s) => s.name === 'GET' && s.parentSpanId === authn.spanId && s.attributes['db.system.name'] === 'redis')
    await otlp.waitFor((s) => s.name === 'SET' && s.parentSpanId === authn.spanId)
  })

  it('from a peer that is no trusted proxy, a client traceparent starts a new trace that links to it; the upstream never gets the client\'s', async () => {
    const untrusted = await gateway(config(`tracing: { endpoint: "${otlp.endpoint}", protocol: http/json, queue: { delay: 20ms } }`))
    const res = await send(untrusted.url, { path: '/orders/9', headers: [bearer(await token()), ['traceparent', `00-${'3'.repeat(32)}-${CLIENT_SPAN}-01`]] })
    expect(res.status).toBe(200)
    const server = await otlp.waitFor((s) => s.kind === 2 && s.links.some((l) => l.traceId === '3'.repeat(32)))
    expect(server.traceId).not.toBe('3'.repeat(32))
    expect(server.parentSpanId).toBe('')
    expect(lastUpstream().headers.traceparent).toMatch(new RegExp(`^00-${server.traceId}-[0-9a-f]{16}-01$`))
  })

  it('exports OTLP/protobuf by default', async () => {
    const proto = await gateway(config(`tracing: { endpoint: "${otlp.endpoint}", queue: { delay: 20ms } }`, 'server: { trust_proxy: [loopback] }'))
    expect((await send(proto.url, { path: '/orders/10', headers: [bearer(await token()), ['traceparent', `00-${'4'.repeat(32)}-${CLIENT_SPAN}-01`]] })).status).toBe(200)
    const server = await otlp.waitFor((s) => s.kind === 2 && s.traceId === '4'.repeat(32))
    expect(server.attributes['http.route']).toBe('/orders/:id')
    expect(otlp.contentTypes).toContain('application/x-protobuf')
  })
})

describe('configured from the standard environment variables', () => {
  it('OTEL_EXPORTER_OTLP_ENDPOINT, _PROTOCOL, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER and OTEL_BSP_* fill what the file leaves out', async () => {
    const g = await gateway(config('tracing: {}', 'server: { trust_proxy: [loopback] }'), {
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_SERVICE_NAME: 'edge-gateway',
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0',
      OTEL_BSP_SCHEDULE_DELAY: '20',
    })
    // A new trace: ratio 0, not recorded; the upstream still gets context (not sampled).
    expect((await send(g.url, { path: '/orders/11', headers: [bearer(await token())] })).status).toBe(200)
    expect(lastUpstream().headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/)
    // A sampled parent decides (parent-based): recorded, under the environment's service name.
    expect((await send(g.url, { path: '/orders/12', headers: [bearer(await token()), ['traceparent', `00-${'5'.repeat(32)}-${CLIENT_SPAN}-01`]] })).status).toBe(200)
    const server = await otlp.waitFor((s) => s.kind === 2 && s.traceId === '5'.repeat(32))
    expect(server.service).toBe('edge-gateway')
  })
})

describe('a collector that is away', () => {
  let hung: Server
  const sockets: Socket[] = []
  beforeAll(async () => {
    // Accepts connections and never answers.
    hung = createServer((s) => void sockets.push(s))
    await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r))
  })
  afterAll(async () => {
    for (const s of sockets) s.destroy()
    await new Promise((r) => hung.close(r))
  })

  it('never slows requests: the queue is bounded, what does not fit is dropped and counted, a hung export is abandoned', async () => {
    const port = (hung.address() as { port: number }).port
    const g = await gateway(config(`tracing: { endpoint: "http://127.0.0.1:${port}/v1/traces", queue: { max_spans: 20, batch_spans: 10, delay: 10ms, export_timeout: 200ms } }`))
    const t = await token()
    const started = Date.now()
    for (let i = 0; i < 10; i++) {
      const results = await Promise.all(Array.from({ length: 10 }, () => send(g.url, { path: '/orders/1', headers: [bearer(t)] })))
      expect(results.every((r) => r.status === 200)).toBe(true)
    }
    // 100 requests, 400 spans: far more than the queue holds while the export hangs.
    expect(Date.now() - started).toBeLessThan(10_000)
    await new Promise((r) => setTimeout(r, 400))
    const text = await g.gateway.metrics.registry.metrics()
    expect(Number(/gateway_trace_spans_dropped_total (\d+)/.exec(text)?.[1])).toBeGreaterThan(100)
    expect(Number(/gateway_trace_exports_total\{outcome="failure"\} (\d+)/.exec(text)?.[1])).toBeGreaterThan(0)
  })
})

describe('stopping with a collector that is away', () => {
  it('waits at most about 2 s for the last spans, whatever the export timeout', async () => {
    const hung = createServer(() => undefined)
    await new Promise<void>((r) => hung.listen(0, '127.0.0.1', r))
    const port = (hung.address() as { port: number }).port
    const g = await startGateway(config(`tracing: { endpoint: "http://127.0.0.1:${port}/v1/traces", queue: { delay: 10ms, export_timeout: 60s } }`))
    try {
      for (let i = 0; i < 5; i++) expect((await send(g.url, { path: '/orders/1', headers: [bearer(await token())] })).status).toBe(200)
      await new Promise((r) => setTimeout(r, 100)) // an export is now hanging
      const started = Date.now()
      await g.close()
      expect(Date.now() - started).toBeLessThan(3000)
    } finally {
      hung.close()
    }
  })
})

describe('tracing off', () => {
  it('adds nothing: a client traceparent passes as sent, no span is exported, the log has no trace ids', async () => {
    const g = await gateway(config(''))
    const before = otlp.spans.length
    const res = await send(g.url, { path: '/orders/13', headers: [bearer(await token()), ['traceparent', `00-${'6'.repeat(32)}-${CLIENT_SPAN}-01`]] })
    expect(res.status).toBe(200)
    expect(lastUpstream().headers.traceparent).toBe(`00-${'6'.repeat(32)}-${CLIENT_SPAN}-01`)
    expect(g.gateway.tracer).toBeUndefined()
    const line = await g.requestLog(res.headers['x-request-id'])
    expect(line.trace_id).toBeUndefined()
    await new Promise((r) => setTimeout(r, 100))
    expect(otlp.spans.slice(before).filter((s) => s.traceId === '6'.repeat(32))).toEqual([])
  })
})
