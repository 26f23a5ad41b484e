import { randomBytes } from 'node:crypto'

/**
 * Where WebSocket frames (RFC 6455 §5.2) end in a byte stream, read as it
 * passes, without holding payloads: the tunnel relays bytes untouched and
 * only needs to know where it may put a frame of its own (a close frame when
 * the token expires) without cutting one in two.
 */
export class FrameCursor {
  /** Header bytes of the frame being read, until its header is whole. */
  private head: Buffer | undefined
  /** Payload bytes of the current frame still to come. */
  private remaining = 0
  /** The opcode of the last frame whose header was read. */
  lastOpcode = -1

  /** True between frames: a frame of our own may go here. */
  get atBoundary(): boolean {
    return this.remaining === 0 && this.head === undefined
  }

  /**
   * Reads `chunk`. With `stopAtBoundary`, stops right after the first frame
   * that ends in it and says how many bytes that was; otherwise reads all of
   * it. Returns the bytes read.
   */
  feed(chunk: Buffer, stopAtBoundary = false): number {
    let i = 0
    while (i < chunk.length) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, chunk.length - i)
        i += take
        this.remaining -= take
        if (this.remaining === 0 && stopAtBoundary) return i
        continue
      }
      const head = this.head === undefined ? chunk.subarray(i, i + 14) : Buffer.concat([this.head, chunk.subarray(i, i + 14 - this.head.length)])
      const had = this.head?.length ?? 0
      const size = headerSize(head)
      if (size === undefined || head.length < size) {
        // The header goes on in the next chunk.
        this.head = Buffer.from(head)
        return chunk.length
      }
      i += size - had
      this.head = undefined
      this.lastOpcode = head[0]! & 0x0f
      this.remaining = payloadLength(head)
      if (this.remaining === 0 && stopAtBoundary) return i
    }
    return i
  }
}

/** The length of a frame header once its first bytes are there; undefined while they are not. */
function headerSize(head: Buffer): number | undefined {
  if (head.length < 2) return undefined
  const len = head[1]! & 0x7f
  const masked = (head[1]! & 0x80) !== 0
  return 2 + (len === 126 ? 2 : len === 127 ? 8 : 0) + (masked ? 4 : 0)
}

function payloadLength(head: Buffer): number {
  const len = head[1]! & 0x7f
  if (len === 126) return head.readUInt16BE(2)
  if (len === 127) return Number(head.readBigUInt64BE(2))
  return len
}

/**
 * A close frame (RFC 6455 §5.5.1) with a status code and a short reason;
 * masked when it goes to a server (§5.3: a client masks every frame).
 */
export function closeFrame(code: number, reason: string, masked: boolean): Buffer {
  const payload = Buffer.alloc(2 + Buffer.byteLength(reason))
  payload.writeUInt16BE(code, 0)
  payload.write(reason, 2)
  if (!masked) return Buffer.concat([Buffer.from([0x88, payload.length]), payload])
  const mask = randomBytes(4)
  for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ mask[i % 4]!
  return Buffer.concat([Buffer.from([0x88, 0x80 | payload.length]), mask, payload])
}
