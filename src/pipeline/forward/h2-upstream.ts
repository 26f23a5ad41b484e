import { connect, constants, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2'
import type { Dispatcher } from 'undici'

/**
 * HTTP/2 to an upstream (gRPC services), with node:http2: h2 over TLS, or h2c
 * with prior knowledge. It takes requests as undici's dispatch does (the
 * forwarder's one handler serves both), and unlike undici's HTTP/2 client it
 * delivers response trailers, where gRPC puts its status. One session per
 * upstream, made again when it closes; streams are multiplexed on it.
 */

/** The part of undici's Pool the forwarder uses. */
export interface UpstreamDispatcher {
  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean
  close(): Promise<void>
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings'])

export class H2Upstream implements UpstreamDispatcher {
  private session: ClientHttp2Session | undefined

  constructor(
    private readonly origin: string,
    private readonly tls: Record<string, unknown>,
  ) {}

  private current(): ClientHttp2Session {
    const open = this.session
    if (open !== undefined && !open.closed && !open.destroyed) return open
    const session = connect(this.origin, this.origin.startsWith('https:') ? this.tls : {})
    session.on('error', () => undefined)
    session.once('close', () => {
      if (this.session === session) this.session = undefined
    })
    this.session = session
    return session
  }

  dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const headers: OutgoingHttpHeaders = { ':method': options.method, ':path': options.path, ':authority': new URL(this.origin).host }
    for (const [name, value] of Object.entries((options.headers ?? {}) as Record<string, string | string[]>)) {
      if (!HOP_BY_HOP.has(name) || (name === 'te' && value === 'trailers')) headers[name] = value
    }
    let done = false
    let stream: ReturnType<ClientHttp2Session['request']> | undefined
    const controller = {
      abort: (reason?: Error) => {
        if (done) return
        fail(reason ?? new Error('aborted'))
        stream?.close(constants.NGHTTP2_CANCEL)
      },
      pause: () => stream?.pause(),
      resume: () => stream?.resume(),
      get aborted() {
        return done
      },
      get paused() {
        return stream?.isPaused() ?? false
      },
      reason: null,
    } as unknown as Dispatcher.DispatchController
    const fail = (err: Error) => {
      if (done) return
      done = true
      clearTimeout(headTimer)
      handler.onResponseError?.(controller, err)
    }
    handler.onRequestStart?.(controller, {})
    let headTimer: NodeJS.Timeout | undefined
    try {
      stream = this.current().request(headers, { endStream: options.body === null || options.body === undefined })
    } catch (err) {
      fail(err as Error)
      return true
    }
    if (options.headersTimeout) {
      headTimer = setTimeout(() => {
        fail(Object.assign(new Error('the upstream did not answer in time'), { code: 'UND_ERR_HEADERS_TIMEOUT' }))
        stream?.close(constants.NGHTTP2_CANCEL)
      }, options.headersTimeout)
    }
    if (options.bodyTimeout) {
      stream.setTimeout(options.bodyTimeout, () => {
        fail(Object.assign(new Error('the upstream went silent'), { code: 'UND_ERR_BODY_TIMEOUT' }))
        stream?.close(constants.NGHTTP2_CANCEL)
      })
    }
    stream.on('response', (head: IncomingHttpHeaders) => {
      clearTimeout(headTimer)
      const status = Number(head[':status'])
      const out: Record<string, string | string[]> = {}
      for (const [k, v] of Object.entries(head)) if (!k.startsWith(':') && v !== undefined) out[k] = v as string | string[]
      handler.onResponseStart?.(controller, status, out, '')
    })
    stream.on('data', (chunk: Buffer) => handler.onResponseData?.(controller, chunk))
    let trailers: Record<string, string | string[]> = {}
    stream.on('trailers', (t: IncomingHttpHeaders) => {
      trailers = {}
      for (const [k, v] of Object.entries(t)) if (v !== undefined) trailers[k] = v as string | string[]
    })
    stream.on('end', () => {
      if (done) return
      done = true
      handler.onResponseEnd?.(controller, trailers)
    })
    stream.on('error', (err) => fail(err))
    stream.on('close', () => fail(new Error('the upstream closed the stream')))
    const body = options.body as Buffer | AsyncIterable<Buffer> | null | undefined
    if (Buffer.isBuffer(body)) stream.end(body)
    else if (body !== null && body !== undefined) {
      void (async () => {
        try {
          for await (const chunk of body) if (!stream.write(chunk)) await new Promise((r) => stream.once('drain', r))
          stream.end()
        } catch (err) {
          controller.abort(err as Error)
        }
      })()
    }
    return true
  }

  async close(): Promise<void> {
    const session = this.session
    this.session = undefined
    if (session && !session.closed) await new Promise<void>((resolve) => session.close(() => resolve()))
  }
}
