import type { IncomingMessage, ServerResponse } from 'node:http'
import { GatewayError } from '../../errors.js'

/**
 * The body stage. Nothing here runs before the request is decided: a
 * refused request is answered from its headers alone (no byte of its body
 * read, no `100 Continue`), and its connection is closed (app.ts). Every
 * read is bounded in bytes and in idle time.
 */

/** Body bytes the pipeline read of each request (the access log's bytes_in). */
const received = new WeakMap<IncomingMessage, number>()

export function bodyBytesRead(req: IncomingMessage): number | undefined {
  return received.get(req)
}

function count(req: IncomingMessage, bytes: number): void {
  received.set(req, (received.get(req) ?? 0) + bytes)
}

/** Whether the request announces a body (a Content-Length above 0, or any Transfer-Encoding). */
export function announcesBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true
  // HTTP/2 frames bodies itself: one follows unless the HEADERS frame ended the stream.
  if (req.httpVersionMajor === 2) return (req as { stream?: { endAfterHeaders?: boolean } }).stream?.endAfterHeaders === false
  const length = req.headers['content-length']
  return length !== undefined && length !== '0'
}

/** Whether some of an announced body is still unread (then a refusal closes the connection). */
export function bodyUnread(req: IncomingMessage): boolean {
  return !req.complete && announcesBody(req)
}

/** Refuses (413) from the headers a body declared larger than the route takes. */
export function refuseDeclaredOversize(req: IncomingMessage, maxBytes: number): void {
  const length = req.headers['content-length']
  if (length !== undefined && Number(length) > maxBytes) throw new GatewayError('body_too_large', 'the request body is larger than this route accepts')
}

/** The media type of the body, lower-case, without parameters. */
export function mediaType(req: IncomingMessage): string | undefined {
  const type = req.headers['content-type']
  if (type === undefined) return undefined
  const semi = type.indexOf(';')
  return (semi < 0 ? type : type.slice(0, semi)).trim().toLowerCase()
}

/** Whether the body is coded (gzip, deflate, br…): its content cannot be checked as it stands. */
export function isEncoded(req: IncomingMessage): boolean {
  const coding = req.headers['content-encoding']
  return coding !== undefined && coding.trim().toLowerCase() !== 'identity' && coding.trim() !== ''
}

/** Answers `100 Continue` once, if the client waits for it: only ever called for an allowed request. */
export function continueIfExpected(req: IncomingMessage, res: ServerResponse): void {
  const expect = req.headers.expect
  if (expect === undefined || res.headersSent || (req as { continued?: boolean }).continued) return
  if (expect.toLowerCase() === '100-continue') {
    ;(req as { continued?: boolean }).continued = true
    res.writeContinue()
  }
}

export interface BodyBounds {
  readonly maxBytes: number
  /** Longest silence from the client while its body is read. */
  readonly idleMs: number
}

/**
 * Destroys the request when its client has sent nothing for `idleMs`,
 * measured on the socket (so a body the gateway is not pulling because the
 * upstream is slow still counts as received). Returns the disarm function.
 */
export function guardIdle(req: IncomingMessage, idleMs: number): () => void {
  const socket = req.socket
  let seen = socket.bytesRead
  const timer = setTimeout(function check() {
    if (req.complete || req.destroyed) return
    if (socket.bytesRead !== seen) {
      seen = socket.bytesRead
      timer.refresh()
      return
    }
    req.destroy(new GatewayError('body_timeout', 'the request body stopped arriving'))
  }, idleMs)
  timer.unref()
  const disarm = () => clearTimeout(timer)
  req.once('end', disarm)
  req.once('close', disarm)
  return disarm
}

export interface Received {
  readonly chunks: Buffer[]
  readonly bytes: number
  /** False when reading stopped at `stopAt` with more to come. */
  readonly ended: boolean
}

/**
 * Reads the body, bounded: more than `maxBytes` is 413, a client silent for
 * `idleMs` is 408. With `stopAt`, reading pauses once that many bytes are in
 * (the rest can then be streamed: streamRest).
 */
export function readBody(req: IncomingMessage, res: ServerResponse, bounds: BodyBounds, stopAt = Number.POSITIVE_INFINITY): Promise<Received> {
  continueIfExpected(req, res)
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let bytes = 0
    const disarm = guardIdle(req, bounds.idleMs)
    const done = (err: unknown, ended: boolean) => {
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onError)
      req.off('close', onClose)
      if (err !== undefined) {
        disarm()
        reject(err)
      } else {
        if (ended) disarm()
        resolve({ chunks, bytes, ended })
      }
    }
    const onData = (chunk: Buffer) => {
      bytes += chunk.length
      count(req, chunk.length)
      if (bytes > bounds.maxBytes) return done(new GatewayError('body_too_large', 'the request body is larger than this route accepts'), false)
      chunks.push(chunk)
      if (bytes >= stopAt) {
        req.pause()
        done(undefined, false)
      }
    }
    const onEnd = () => done(undefined, true)
    const onError = (err: Error) => done(err instanceof GatewayError ? err : new GatewayError('request_malformed', 'the request body could not be read', { cause: err }), false)
    const onClose = () => {
      if (!req.readableEnded) done(new GatewayError('client_closed', 'the client closed the connection before sending its body'), false)
    }
    req.on('data', onData)
    req.once('end', onEnd)
    req.once('error', onError)
    req.once('close', onClose)
    // `complete` only says the parser is done; what it parsed may still wait in the stream.
    if (req.readableEnded) done(undefined, true)
    else req.resume()
  })
}

/**
 * The rest of a body for streaming upstream, after what was read already:
 * still bounded in bytes (the iteration throws 413 past `maxBytes`) and in
 * idle time.
 */
export async function* streamRest(req: IncomingMessage, already: Received, bounds: BodyBounds): AsyncGenerator<Buffer> {
  for (const chunk of already.chunks) yield chunk
  if (already.ended) return
  let bytes = already.bytes
  guardIdle(req, bounds.idleMs)
  for await (const chunk of req as AsyncIterable<Buffer>) {
    bytes += chunk.length
    count(req, chunk.length)
    if (bytes > bounds.maxBytes) throw new GatewayError('body_too_large', 'the request body is larger than this route accepts')
    yield chunk
  }
}

/**
 * The memory all received-before-forwarding bodies may hold together. A body
 * that cannot get its share streams instead.
 */
export class BufferBudget {
  private used = 0

  constructor(private readonly total: number) {}

  take(bytes: number): boolean {
    if (this.used + bytes > this.total) return false
    this.used += bytes
    return true
  }

  give(bytes: number): void {
    this.used -= bytes
  }
}
