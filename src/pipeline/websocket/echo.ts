import { createHash } from 'node:crypto'
import type { Socket } from 'node:net'
import { closeFrame } from './frames.js'
import type { TunnelEnd, TunnelObserver, WebSocketPolicy } from './tunnel.js'

/**
 * The built-in echo responder's WebSocket side: it accepts the handshake
 * itself, sends what a service behind the route would have received (method,
 * path, query, headers) as its first message, then echoes every message.
 * Bounded like a tunnel: idle, age, token expiry (1008), drain (1001);
 * messages over 1 MiB close it (1009).
 */

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
const MAX_MESSAGE = 1024 * 1024

function frame(opcode: number, payload: Buffer, fin = true): Buffer {
  const len = payload.length
  const head = len < 126 ? Buffer.from([(fin ? 0x80 : 0) | opcode, len]) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10)
  if (len >= 126) {
    head[0] = (fin ? 0x80 : 0) | opcode
    if (len < 65536) {
      head[1] = 126
      head.writeUInt16BE(len, 2)
    } else {
      head[1] = 127
      head.writeBigUInt64BE(BigInt(len), 2)
    }
  }
  return Buffer.concat([head, payload])
}

export interface EchoSession {
  readonly client: Socket
  readonly head: Buffer
  readonly key: string
  /** The subprotocol to accept (the first the client offered, the token one excluded). */
  readonly protocol: string | undefined
  /** The first message: what a service would have received. */
  readonly greeting: string
  readonly policy: WebSocketPolicy
  readonly expiresAt: number | undefined
  readonly routeId: string
  readonly observer: TunnelObserver | undefined
  readonly now: () => number
}

export function acceptEcho(s: EchoSession): void {
  const client = s.client
  const accept = createHash('sha1').update(s.key.trim() + GUID).digest('base64')
  client.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n${s.protocol ? `Sec-WebSocket-Protocol: ${s.protocol}\r\n` : ''}\r\n`)
  client.write(frame(1, Buffer.from(s.greeting)))
  const started = s.now()
  let ending: TunnelEnd | undefined
  let done = false
  const timers: NodeJS.Timeout[] = []
  const finish = (reason: TunnelEnd) => {
    if (done) return
    done = true
    for (const t of timers) clearTimeout(t)
    client.destroy()
    s.observer?.closed(s.routeId, ending ?? reason, (s.now() - started) / 1000, stop)
  }
  const end = (why: Exclude<TunnelEnd, 'closed' | 'error'>, code: number, reason: string) => {
    if (ending !== undefined) return
    ending = why
    client.write(closeFrame(code, reason, false))
    timers.push(setTimeout(() => finish(why), 5000).unref())
  }
  const stop = () => end('shutdown', 1001, 'gateway going away')
  s.observer?.opened(s.routeId, stop)

  let buffer = s.head
  const onData = (chunk: Buffer) => {
    buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk])
    for (;;) {
      if (buffer.length < 2) return
      const fin = (buffer[0]! & 0x80) !== 0
      const opcode = buffer[0]! & 0x0f
      const masked = (buffer[1]! & 0x80) !== 0
      let len = buffer[1]! & 0x7f
      let at = 2
      if (len === 126) {
        if (buffer.length < 4) return
        len = buffer.readUInt16BE(2)
        at = 4
      } else if (len === 127) {
        if (buffer.length < 10) return
        const big = buffer.readBigUInt64BE(2)
        len = big > BigInt(MAX_MESSAGE) ? MAX_MESSAGE + 1 : Number(big)
        at = 10
      }
      // A client masks every frame (RFC 6455 §5.1); a frame too large is not read into memory.
      if (!masked) return end('protocol_error', 1002, 'unmasked frame')
      if (len > MAX_MESSAGE) return end('protocol_error', 1009, 'message too big')
      if (buffer.length < at + 4 + len) return
      const mask = buffer.subarray(at, at + 4)
      const payload = Buffer.from(buffer.subarray(at + 4, at + 4 + len))
      for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ mask[i % 4]!
      buffer = buffer.subarray(at + 4 + len)
      if (opcode === 8) {
        // The client closes (or answers our close): the same code back, then the connection ends.
        if (ending === undefined) client.write(frame(8, payload.subarray(0, 2)))
        client.end()
        return finish('closed')
      }
      if (ending !== undefined) continue
      if (opcode === 9) client.write(frame(10, payload))
      else if (opcode === 0 || opcode === 1 || opcode === 2) client.write(frame(opcode, payload, fin))
    }
  }
  client.on('data', onData)
  client.on('close', () => finish('closed'))
  client.on('error', () => finish('error'))
  client.setTimeout(s.policy.idleMs, () => end('idle', 1001, 'idle timeout'))
  timers.push(setTimeout(() => end('max_duration', 1001, 'tunnel too old'), Math.min(s.policy.maxMs, 2 ** 31 - 1)).unref())
  if (s.policy.closeOnExpiry && s.expiresAt !== undefined) {
    timers.push(setTimeout(() => end('token_expired', 1008, 'token expired'), Math.max(0, Math.min(s.expiresAt * 1000 - s.now(), 2 ** 31 - 1))).unref())
  }
  client.resume()
  if (buffer.length > 0) onData(Buffer.alloc(0))
}
