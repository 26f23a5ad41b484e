import type { IncomingMessage } from 'node:http'
import { connect as tcpConnect, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { GatewayError } from '../../errors.js'
import { connectOptions, tlsFailure } from '../forward/tls.js'
import type { Target } from '../forward/targets.js'
import { closeFrame, FrameCursor } from './frames.js'

/**
 * WebSocket routes (RFC 6455): an `Upgrade: websocket` request is decided
 * like any other (the handler runs every stage), then tunnelled here: the
 * upgrade goes to the upstream with the gateway's headers, its answer comes
 * back as it is, and bytes flow both ways untouched, bounded in idle time and
 * duration. When the token that opened the tunnel expires, each side gets a
 * close frame (1008) at a frame boundary, then the connection closes.
 */

export interface WebSocketPolicy {
  /** Longest silence on the client connection, in ms. */
  readonly idleMs: number
  /** Longest life of a tunnel, in ms. */
  readonly maxMs: number
  /** Close the tunnel when the token that opened it expires. */
  readonly closeOnExpiry: boolean
  /** Browsers may send the token as a `base64url.bearer.authorization.k8s.io.<token>` subprotocol. */
  readonly subprotocolToken: boolean
}

export type TunnelEnd = 'closed' | 'token_expired' | 'idle' | 'max_duration' | 'shutdown' | 'protocol_error' | 'error'

export const TUNNEL_ENDS: readonly TunnelEnd[] = ['closed', 'token_expired', 'idle', 'max_duration', 'shutdown', 'protocol_error', 'error']

export interface TunnelObserver {
  /** `stop` ends the tunnel as a shutdown does (1001, after a close handshake). */
  opened(route: string, stop: () => void): void
  closed(route: string, reason: TunnelEnd, seconds: number, stop: () => void): void
}

/** What a WebSocket handshake must carry (RFC 6455 §4.1) to be tunnelled. */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade
  return typeof upgrade === 'string' && upgrade.trim().toLowerCase() === 'websocket'
}

export function checkHandshake(req: IncomingMessage): void {
  if (req.method !== 'GET') throw new GatewayError('request_malformed', 'a WebSocket handshake is a GET request')
  if (req.headers['sec-websocket-version'] !== '13') throw new GatewayError('request_malformed', 'a WebSocket handshake needs Sec-WebSocket-Version: 13')
  const key = req.headers['sec-websocket-key']
  if (typeof key !== 'string' || !/^[A-Za-z0-9+/]{22}==$/.test(key.trim())) throw new GatewayError('request_malformed', 'a WebSocket handshake needs a Sec-WebSocket-Key')
}

const K8S_PREFIX = 'base64url.bearer.authorization.k8s.io.'

/**
 * The token a browser sent as a subprotocol (the Kubernetes convention:
 * browsers cannot set Authorization on a WebSocket), and the subprotocols
 * left once it is taken out (they go to the upstream). Undefined without one.
 */
export function subprotocolToken(header: string | undefined): { token: string; rest: string | undefined } | undefined {
  if (header === undefined) return undefined
  const protocols = header.split(',').map((p) => p.trim())
  const carrying = protocols.filter((p) => p.startsWith(K8S_PREFIX))
  if (carrying.length === 0) return undefined
  if (carrying.length > 1) throw new GatewayError('token_duplicated', 'the handshake carries more than one token subprotocol')
  const encoded = carrying[0]!.slice(K8S_PREFIX.length)
  if (!/^[A-Za-z0-9_-]{1,22000}$/.test(encoded)) throw new GatewayError('authorization_malformed', 'the token subprotocol is not base64url')
  const token = Buffer.from(encoded, 'base64url').toString('latin1')
  if (!/^[A-Za-z0-9\-._~+/]+=*$/.test(token)) throw new GatewayError('authorization_malformed', 'the token subprotocol does not hold a bearer token')
  const rest = protocols.filter((p) => !p.startsWith(K8S_PREFIX))
  return { token, rest: rest.length > 0 ? rest.join(', ') : undefined }
}

/** The head of the upstream's answer: at most this many bytes. */
const MAX_HEAD = 16 * 1024
/** After a close frame is sent, how long the other side has to close its end. */
const CLOSE_GRACE_MS = 5000

export interface TunnelRequest {
  readonly client: Socket
  /** Bytes the client sent after its handshake (frames already on their way). */
  readonly head: Buffer
  readonly target: Extract<Target, { kind: 'http' }>
  /** The upstream path and query. */
  readonly path: string
  /** The request headers for the upstream (already rewritten), without Connection and Upgrade. */
  readonly headers: Readonly<Record<string, string | string[]>>
  readonly policy: WebSocketPolicy
  /** When the token expires (seconds since the epoch), if it says. */
  readonly expiresAt: number | undefined
  readonly routeId: string
  readonly observer: TunnelObserver | undefined
  readonly now: () => number
}

function connectUpstream(target: TunnelRequest['target']): Socket {
  const url = new URL(target.origin)
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80))
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
  // Messages are small and interactive: no Nagle delay on the way to the upstream (the client side has none either).
  const socket = url.protocol === 'https:' ? tlsConnect({ host, port, ...connectOptions(target.tls), ALPNProtocols: ['http/1.1'] }) : tcpConnect({ host, port })
  return socket.setNoDelay(true)
}

/** Reads the upstream's answer head; the bytes after it come back too. */
function readHead(upstream: Socket, timeoutMs: number): Promise<{ head: Buffer; status: number; upgraded: boolean; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0)
    const timer = setTimeout(() => fail(new GatewayError('upstream_timeout', 'the upstream did not answer the WebSocket handshake in time')), timeoutMs)
    const fail = (err: unknown) => {
      clearTimeout(timer)
      upstream.off('data', onData)
      upstream.destroy()
      if (err instanceof GatewayError) return reject(err)
      const tls = tlsFailure(err as { code?: string })
      reject(tls !== undefined ? new GatewayError('upstream_tls_failed', 'TLS to the upstream failed', { cause: err, tlsFailure: tls }) : new GatewayError('upstream_unavailable', 'the upstream could not be reached', { cause: err }))
    }
    const onData = (chunk: Buffer) => {
      got = Buffer.concat([got, chunk])
      const end = got.indexOf('\r\n\r\n')
      if (end < 0) {
        if (got.length > MAX_HEAD) fail(new GatewayError('upstream_failed', 'the upstream answered the handshake with a head too large'))
        return
      }
      clearTimeout(timer)
      upstream.off('data', onData)
      upstream.off('error', fail)
      upstream.pause()
      const head = got.subarray(0, end + 4)
      const text = head.toString('latin1')
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text)
      if (!m) return fail(new GatewayError('upstream_failed', 'the upstream answered the handshake with something that is not HTTP/1.1'))
      const status = Number(m[1])
      resolve({ head, status, upgraded: status === 101 && /\r\nupgrade:[ \t]*websocket[ \t]*\r\n/i.test(text), rest: got.subarray(end + 4) })
    }
    upstream.on('data', onData)
    upstream.once('error', fail)
    upstream.once('close', () => fail(new Error('closed before answering')))
  })
}

/**
 * Opens the tunnel: resolves with the status the client got once the
 * upstream answered (101: the tunnel runs on; anything else was relayed and
 * the connection closes). Throws a GatewayError, with nothing written to the
 * client, when the upstream cannot be reached or answers nonsense.
 */
export async function openTunnel(t: TunnelRequest): Promise<number> {
  const upstream = connectUpstream(t.target)
  // The upstream's own host, or the client's (preserve_host: then it is among the headers).
  const host = t.headers.host ?? new URL(t.target.origin).host
  const lines = [`GET ${t.path} HTTP/1.1`, `Host: ${String(host)}`]
  for (const [name, value] of Object.entries(t.headers)) {
    if (name === 'host') continue
    for (const v of Array.isArray(value) ? value : [value]) lines.push(`${name}: ${v}`)
  }
  lines.push('Connection: Upgrade', 'Upgrade: websocket', '', '')
  upstream.write(lines.join('\r\n'))
  let answer
  try {
    answer = await readHead(upstream, t.target.timeoutMs)
  } finally {
    upstream.removeAllListeners('close')
  }
  const client = t.client
  if (!answer.upgraded) {
    // Refused by the upstream (401, 403, 400…): its answer as it is, then the connection closes.
    client.write(answer.head)
    client.write(answer.rest)
    upstream.resume()
    upstream.pipe(client)
    upstream.once('error', () => client.destroy())
    client.once('error', () => upstream.destroy())
    client.once('close', () => upstream.destroy())
    return answer.status
  }
  client.write(answer.head)
  if (answer.rest.length > 0) client.write(answer.rest)
  if (t.head.length > 0) upstream.write(t.head)
  run(t, client, upstream, answer.rest)
  return 101
}

/** The open tunnel: relays both ways, ends it on expiry, silence, age, or either side closing. */
function run(t: TunnelRequest, client: Socket, upstream: Socket, alreadySent: Buffer): void {
  const started = t.now()
  const toClient = new FrameCursor()
  const toUpstream = new FrameCursor()
  toClient.feed(alreadySent)
  toUpstream.feed(t.head)
  let ending: TunnelEnd | undefined
  let ended = false
  const timers: NodeJS.Timeout[] = []
  const finish = (reason: TunnelEnd) => {
    if (ended) return
    ended = true
    for (const timer of timers) clearTimeout(timer)
    client.destroy()
    upstream.destroy()
    t.observer?.closed(t.routeId, ending ?? reason, (t.now() - started) / 1000, stop)
  }
  // A close frame of our own goes to each side at its next frame boundary; then relaying stops.
  let clientClosed = false
  let upstreamClosed = false
  const closeClient = (code: number, reason: string) => {
    if (clientClosed) return
    clientClosed = true
    client.write(closeFrame(code, reason, false))
  }
  const closeUpstream = (code: number, reason: string) => {
    if (upstreamClosed) return
    upstreamClosed = true
    upstream.write(closeFrame(code, reason, true))
  }
  let closeCode = 1000
  let closeReason = ''
  function end(why: Exclude<TunnelEnd, 'closed' | 'error'>, code: number, reason: string): void {
    if (ending !== undefined) return
    ending = why
    closeCode = code
    closeReason = reason
    if (toClient.atBoundary) closeClient(code, reason)
    if (toUpstream.atBoundary) closeUpstream(code, reason)
    timers.push(setTimeout(() => finish(why), CLOSE_GRACE_MS).unref())
  }
  const stop = () => end('shutdown', 1001, 'gateway going away')
  t.observer?.opened(t.routeId, stop)
  const relay = (from: Socket, to: Socket, cursor: FrameCursor, closeTo: () => void, isClosed: () => boolean) => {
    from.on('data', (chunk: Buffer) => {
      if (ending === undefined) {
        cursor.feed(chunk)
        if (!to.write(chunk)) from.pause()
        return
      }
      if (isClosed()) return // after our close frame, nothing more goes that way
      const upTo = cursor.feed(chunk, true)
      to.write(chunk.subarray(0, upTo))
      if (cursor.atBoundary) closeTo()
    })
    to.on('drain', () => from.resume())
  }
  relay(client, upstream, toUpstream, () => closeUpstream(closeCode, closeReason), () => upstreamClosed)
  relay(upstream, client, toClient, () => closeClient(closeCode, closeReason), () => clientClosed)
  client.setNoDelay(true)
  client.resume()
  upstream.resume()
  for (const s of [client, upstream]) {
    s.on('end', () => finish('closed'))
    s.on('close', () => finish('closed'))
    s.on('error', () => finish('error'))
  }
  client.setTimeout(t.policy.idleMs, () => end('idle', 1001, 'idle timeout'))
  timers.push(setTimeout(() => end('max_duration', 1001, 'tunnel too old'), Math.min(t.policy.maxMs, 2 ** 31 - 1)).unref())
  if (t.policy.closeOnExpiry && t.expiresAt !== undefined) {
    const left = t.expiresAt * 1000 - t.now()
    timers.push(setTimeout(() => end('token_expired', 1008, 'token expired'), Math.max(0, Math.min(left, 2 ** 31 - 1))).unref())
  }
}
