import { defaultTextMapGetter, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Link, type Span, type SpanContext } from '@opentelemetry/api'
import { ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { randomFillSync } from 'node:crypto'
import { AlwaysOnSampler, TracerProvider, type ReadableSpan, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace'
import { OTLPTraceExporter as ProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { BUILD } from '../build-info.js'
import type { CallKind, CallObserver, ObservedCall } from './calls.js'

/** How traces are made and exported (compiled from the `tracing` section and the OTEL_* variables). */
export interface TracingSettings {
  readonly endpoint: string
  readonly protocol: 'http/protobuf' | 'http/json'
  readonly headers: Readonly<Record<string, string>>
  readonly serviceName: string
  /** Share of new traces recorded (parent-based: a continued trace follows its parent). */
  readonly ratio: number
  /** Whether a sampled parent decides (parentbased_*) or the ratio alone (traceidratio…). */
  readonly parentBased: boolean
  readonly incoming: 'trusted' | 'always' | 'link'
  readonly maxQueue: number
  readonly batch: number
  readonly delayMs: number
  readonly exportTimeoutMs: number
}

/** What the tracer reports (the metrics are one implementation). */
export interface TracingObserver {
  spansDropped(count: number): void
  exported(outcome: 'success' | 'failure', spans: number): void
}

/** The longest a stopping gateway waits for its last spans to be exported. */
const SHUTDOWN_FLUSH_MS = 2000

/**
 * A span processor with a bounded queue: ended spans wait in memory (at most
 * `maxQueue`; more are dropped and counted, never blocking or growing), and
 * are exported in batches of at most `batch`, one export at a time, every
 * `delayMs` or as soon as a batch is full. An export that does not finish
 * within its timeout is abandoned. A dead collector costs requests nothing.
 */
export class BoundedExportProcessor implements SpanProcessor {
  private queue: ReadableSpan[] = []
  private timer: NodeJS.Timeout | undefined
  private exporting: Promise<void> | undefined
  private stopped = false

  constructor(
    private readonly exporter: SpanExporter,
    private readonly settings: Pick<TracingSettings, 'maxQueue' | 'batch' | 'delayMs' | 'exportTimeoutMs'>,
    private readonly observer?: TracingObserver,
  ) {}

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    if (this.stopped || (span.spanContext().traceFlags & 1) === 0) return
    if (this.queue.length >= this.settings.maxQueue) {
      this.observer?.spansDropped(1)
      return
    }
    this.queue.push(span)
    if (this.queue.length >= this.settings.batch) this.kick(0)
    else this.kick(this.settings.delayMs)
  }

  private kick(delay: number): void {
    if (this.exporting !== undefined) return
    if (this.timer !== undefined) {
      if (delay > 0) return
      clearTimeout(this.timer)
    }
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.exportOnce()
    }, delay)
    this.timer.unref()
  }

  private exportOnce(): Promise<void> {
    if (this.exporting !== undefined || this.queue.length === 0) return this.exporting ?? Promise.resolve()
    const spans = this.queue.splice(0, this.settings.batch)
    this.exporting = new Promise<void>((resolve) => {
      let done = false
      const finish = (ok: boolean) => {
        if (done) return
        done = true
        clearTimeout(timeout)
        this.observer?.exported(ok ? 'success' : 'failure', spans.length)
        resolve()
      }
      const timeout = setTimeout(() => finish(false), this.settings.exportTimeoutMs)
      timeout.unref()
      try {
        this.exporter.export(spans, (result) => finish(result.code === ExportResultCode.SUCCESS))
      } catch {
        finish(false)
      }
    }).finally(() => {
      this.exporting = undefined
      if (this.queue.length > 0) this.kick(this.queue.length >= this.settings.batch ? 0 : this.settings.delayMs)
    })
    return this.exporting
  }

  /** Exports what is queued, up to `ms`. */
  async forceFlush(ms = this.settings.exportTimeoutMs): Promise<void> {
    const deadline = Date.now() + ms
    while ((this.queue.length > 0 || this.exporting !== undefined) && Date.now() < deadline) {
      await Promise.race([this.exportOnce(), new Promise((r) => setTimeout(r, Math.max(1, deadline - Date.now())).unref())])
    }
  }

  /** Exports what is queued (at most 2 s, or the export timeout if shorter: a dead collector must not hold a drain) and stops. */
  async shutdown(): Promise<void> {
    const deadline = Date.now() + Math.min(this.settings.exportTimeoutMs, SHUTDOWN_FLUSH_MS)
    await this.forceFlush(deadline - Date.now())
    this.stopped = true
    clearTimeout(this.timer)
    this.queue = []
    // The exporter waits for its sends in flight: not longer than the flush did.
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.exporter.shutdown().catch(() => undefined), new Promise((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now()))))])
    clearTimeout(timer)
  }
}

/** A request's trace: its server span and the context its child spans and calls hang from. */
export interface RequestTrace {
  readonly span: Span
  readonly method: string
  readonly context: Context
  /** Recorded (sampled): its ids go into the access log. */
  readonly recording: boolean
  /** The observer of its calls: CLIENT spans when recorded; else only the trace context, passed on. */
  readonly calls: CallObserver
}

export interface IncomingRequest {
  readonly method: string
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  /** Whether the peer may continue a trace (a trusted proxy; see `incoming`): asked only when it sends one. */
  trustedPeer(): boolean
  /** What a recorded span says of the request: asked only when it is recorded. */
  describe(): { readonly scheme: string; readonly host: string | undefined; readonly path: string; readonly clientAddress: string }
}

const propagator = new W3CTraceContextPropagator()

const ZERO_TRACE_ID = '0'.repeat(32)
const ZERO_SPAN_ID = '0'.repeat(16)

/** Random ids from a pooled buffer (one getrandom call per 256 ids). */
const idPool = Buffer.alloc(4096)
let idAt = idPool.length
function randomHex(bytes: number): string {
  if (idAt + bytes > idPool.length) {
    randomFillSync(idPool)
    idAt = 0
  }
  const hex = idPool.toString('hex', idAt, idAt + bytes)
  idAt += bytes
  // An all-zero id is invalid (W3C): draw again.
  return hex === ZERO_TRACE_ID || hex === ZERO_SPAN_ID ? randomHex(bytes) : hex
}
const NO_CALL_END = () => undefined
const NO_CALLS: CallObserver = () => undefined

/** For a request not recorded: its calls carry its trace context (not sampled), and make no span. */
function passOn(span: Span): CallObserver {
  let call: ObservedCall | undefined
  return (kind) => {
    if (kind === 'redis') return undefined
    call ??= { headers: traceHeaders(span.spanContext()), end: NO_CALL_END }
    return call
  }
}

/** traceparent (and tracestate) for a span context. */
function traceHeaders(sc: SpanContext): Record<string, string> {
  const headers: Record<string, string> = { traceparent: `00-${sc.traceId}-${sc.spanId}-0${sc.traceFlags & 1}` }
  const state = sc.traceState?.serialize()
  if (state) headers.tracestate = state
  return headers
}

/**
 * The gateway's tracer, over the OpenTelemetry SDK: a SERVER span per
 * request, INTERNAL spans for stages the handler names, CLIENT spans for
 * every outbound call (through observe/calls.ts: each request's observer is
 * handed down with its calls), W3C trace context on each. Nothing is
 * installed globally and no async context is kept.
 */
export class GatewayTracer {
  private readonly provider: TracerProvider
  private readonly processor: BoundedExportProcessor
  private readonly tracer

  constructor(
    private readonly settings: TracingSettings,
    observer?: TracingObserver,
    exporter?: SpanExporter,
  ) {
    const options = { url: settings.endpoint, headers: { ...settings.headers }, timeoutMillis: settings.exportTimeoutMs, concurrencyLimit: 1 }
    this.processor = new BoundedExportProcessor(exporter ?? (settings.protocol === 'http/json' ? new JsonExporter(options) : new ProtobufExporter(options)), settings, observer)
    this.provider = new TracerProvider({
      // The decision is made in startRequest (parent-based ratio); what reaches the SDK is recorded.
      sampler: new AlwaysOnSampler(),
      resource: resourceFromAttributes({ 'service.name': settings.serviceName, 'service.version': BUILD.version }),
      spanProcessors: [this.processor],
    })
    this.tracer = this.provider.getTracer('oauth-gateway', BUILD.version)
  }

  /**
   * The SERVER span of a request, continuing or linking the client's trace
   * as `incoming` says. Sampling is decided here (parent-based: a continued
   * trace follows its parent's flag; a new one the ratio); a request not
   * sampled gets ids and passes its context on, and costs the SDK nothing.
   */
  startRequest(req: IncomingRequest): RequestTrace {
    let parent: Context = ROOT_CONTEXT
    let remote: SpanContext | undefined
    let links: Link[] | undefined
    if (typeof req.headers.traceparent === 'string') {
      const extracted = propagator.extract(ROOT_CONTEXT, req.headers, defaultTextMapGetter)
      const given = trace.getSpanContext(extracted)
      if (given !== undefined) {
        const continues = this.settings.incoming === 'always' || (this.settings.incoming === 'trusted' && req.trustedPeer())
        if (continues) {
          parent = extracted
          remote = given
        } else links = [{ context: given, attributes: { 'gateway.link': 'client traceparent, not continued' } }]
      }
    }
    const ratio = this.settings.ratio
    const sampled = remote !== undefined && this.settings.parentBased ? (remote.traceFlags & 1) === 1 : ratio >= 1 || (ratio > 0 && Math.random() < ratio)
    if (!sampled) {
      const span = trace.wrapSpanContext({ traceId: remote?.traceId ?? randomHex(16), spanId: randomHex(8), traceFlags: 0, ...(remote?.traceState ? { traceState: remote.traceState } : {}) })
      return { span, method: req.method, context: ROOT_CONTEXT, recording: false, calls: passOn(span) }
    }
    const d = req.describe()
    const attributes: Record<string, string> = { 'http.request.method': req.method, 'url.path': d.path, 'url.scheme': d.scheme, 'client.address': d.clientAddress }
    if (d.host !== undefined) attributes['server.address'] = d.host
    if (typeof req.headers['user-agent'] === 'string') attributes['user_agent.original'] = req.headers['user-agent']
    const span = this.tracer.startSpan(req.method, { kind: SpanKind.SERVER, attributes, ...(links ? { links } : {}) }, parent)
    const t: { span: Span; method: string; context: Context; recording: boolean; calls: CallObserver } = { span, method: req.method, context: trace.setSpan(parent, span), recording: true, calls: NO_CALLS }
    t.calls = (kind, name, target) => this.call(t, kind, name, target)
    return t
  }

  /**
   * Runs a stage (authentication…) in an INTERNAL span of the request, the
   * parent of the calls it makes; a refusal is its status, with the reason.
   */
  async within<T>(t: RequestTrace, name: string, fn: (calls: CallObserver) => Promise<T>): Promise<T> {
    if (!t.recording) return fn(t.calls)
    const span = this.tracer.startSpan(name, { kind: SpanKind.INTERNAL }, t.context)
    try {
      const child: RequestTrace & { calls: CallObserver } = { ...t, span, context: trace.setSpan(t.context, span) }
      child.calls = (kind, name, target) => this.call(child, kind, name, target)
      return await fn(child.calls)
    } catch (err) {
      const code = (err as { code?: unknown }).code
      if (typeof code === 'string') span.setAttribute('gateway.reason', code)
      span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : 'failed' })
      throw err
    } finally {
      span.end()
    }
  }

  /** Ends a request's SERVER span with what became of it. */
  endRequest(t: RequestTrace, end: { status: number; routeId: string | undefined; routePattern: string | undefined; decision: string; reason: string | undefined }): void {
    const span = t.span
    if (t.recording) {
      if (end.routePattern !== undefined) {
        span.updateName(`${t.method} ${end.routePattern}`)
        span.setAttribute('http.route', end.routePattern)
      }
      if (end.routeId !== undefined) span.setAttribute('gateway.route.id', end.routeId)
      span.setAttribute('http.response.status_code', end.status)
      span.setAttribute('gateway.decision', end.decision)
      if (end.reason !== undefined) span.setAttribute('gateway.reason', end.reason)
      if (end.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: end.reason ?? `status ${end.status}` })
    }
    span.end()
  }

  /** A CLIENT span for an outbound call of the current request (none outside a request, and none to Redis when it is not recorded). */
  private call(t: RequestTrace, kind: CallKind, name: string, target: string): ObservedCall | undefined {
    if (kind === 'redis' && !t.recording) return undefined
    const attributes: Record<string, string | number> = {}
    if (kind === 'redis') {
      attributes['db.system.name'] = 'redis'
      attributes['db.operation.name'] = name
      attributes['server.address'] = target
    } else {
      attributes['http.request.method'] = name
      attributes['url.full'] = target
      try {
        const u = new URL(target)
        attributes['server.address'] = u.hostname
        attributes['server.port'] = Number(u.port || (u.protocol === 'https:' ? 443 : 80))
      } catch {
        // a target that is not a URL has no address to tell
      }
      attributes['gateway.call'] = kind
    }
    const span = this.tracer.startSpan(kind === 'redis' ? name : `${name} ${kind}`, { kind: SpanKind.CLIENT, attributes }, t.context)
    return {
      headers: kind === 'redis' ? undefined : traceHeaders(span.spanContext()),
      end(status, error) {
        if (status !== undefined) span.setAttribute('http.response.status_code', status)
        if (error !== undefined || (status !== undefined && status >= 500)) {
          const message = error instanceof Error ? error.message : status !== undefined ? `status ${status}` : 'failed'
          span.setStatus({ code: SpanStatusCode.ERROR, message })
          if (error instanceof Error) span.setAttribute('error.type', (error as NodeJS.ErrnoException).code ?? error.name)
        }
        span.end()
      },
    }
  }

  /** The ids the access log carries for a recorded request. */
  ids(t: RequestTrace): { traceId: string; spanId: string } | undefined {
    if (!t.recording) return undefined
    const sc = t.span.spanContext()
    return { traceId: sc.traceId, spanId: sc.spanId }
  }

  /** Exports what is queued (at most the export timeout) and stops. */
  async shutdown(): Promise<void> {
    await this.provider.shutdown().catch(() => undefined)
  }
}
