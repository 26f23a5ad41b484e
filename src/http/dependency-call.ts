import { EventEmitter } from 'node:events'
import { Agent } from 'undici'

/**
 * How the gateway calls the HTTP services it depends on (introspection,
 * JWKS, discovery): undici's request API on one keep-alive agent, not fetch.
 * An introspection call is made for every new opaque token, so its cost is
 * per request: fetch's Request, Response, Headers, AbortSignal.timeout and
 * WHATWG stream objects made it several times dearer in CPU, and far dearer
 * in garbage (the bench's opaque-token phase measured it).
 *
 * Redirects are never followed (a 3xx is an answer like any other non-200).
 * The whole call, connecting included, is bounded by `timeoutMs`, and the
 * body by `maxBytes` (a larger declared or actual body fails the call).
 */
export interface DependencyRequest {
  readonly method: 'GET' | 'POST'
  readonly headers: Readonly<Record<string, string>>
  readonly body?: string
  readonly timeoutMs: number
  readonly maxBytes: number
}

export interface DependencyResponse {
  readonly status: number
  /** The body as UTF-8; empty for any status but 200 (its body is discarded unread). */
  readonly text: string
}

const agent = new Agent({ keepAliveTimeout: 30_000, connections: 128, pipelining: 1, connect: { timeout: 30_000 } })

/** A bounded call; rejects on a network failure, the deadline or an oversized body. */
export async function dependencyCall(url: string, request: DependencyRequest): Promise<DependencyResponse> {
  // An EventEmitter is a signal undici accepts, at a fraction of an AbortSignal's cost.
  const signal = new EventEmitter()
  const deadline = setTimeout(() => signal.emit('abort'), request.timeoutMs)
  try {
    const target = new URL(url)
    const res = await agent.request({ origin: target.origin, path: target.pathname + target.search, method: request.method, headers: request.headers, body: request.body ?? null, signal })
    // A body not read is dropped with its connection (quietly: its abort is not the call's failure).
    res.body.on('error', ignore)
    if (res.statusCode !== 200) {
      res.body.destroy()
      return { status: res.statusCode, text: '' }
    }
    const declared = Number(res.headers['content-length'] ?? 0)
    if (declared > request.maxBytes) {
      res.body.destroy()
      throw new Error(`response larger than ${request.maxBytes} bytes`)
    }
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length
      if (size > request.maxBytes) {
        res.body.destroy()
        throw new Error(`response larger than ${request.maxBytes} bytes`)
      }
      chunks.push(chunk)
    }
    return { status: 200, text: chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8') }
  } finally {
    clearTimeout(deadline)
  }
}

function ignore(): void {}
