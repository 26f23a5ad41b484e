import { connect, type Socket } from 'node:net'

export interface RawConnection {
  readonly socket: Socket
  /** Everything the server sent so far, as text. */
  readonly received: () => string
  write(data: string | Buffer): void
  /** Resolves once the server closed (or reset) the connection, with the ms since connecting. */
  readonly closed: Promise<number>
  /** Resolves once the received text matches. */
  until(pattern: RegExp, timeoutMs?: number): Promise<string>
  destroy(): void
}

/** A plain TCP connection to an http:// URL's host and port: bytes go out exactly as written. */
export async function rawConnect(url: string): Promise<RawConnection> {
  const { hostname, port } = new URL(url)
  const socket = connect(Number(port), hostname)
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  const started = Date.now()
  let text = ''
  const waiters: Array<() => void> = []
  socket.on('data', (d) => {
    text += d.toString('latin1')
    for (const w of waiters.splice(0)) w()
  })
  socket.on('error', () => undefined)
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - started)))
  return {
    socket,
    received: () => text,
    write: (data) => void socket.write(data),
    closed,
    async until(pattern, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs
      while (!pattern.test(text)) {
        if (Date.now() > deadline || socket.destroyed) throw new Error(`no ${pattern} in ${JSON.stringify(text.slice(0, 300))}`)
        await new Promise<void>((r) => {
          waiters.push(r)
          setTimeout(r, 50)
        })
      }
      return text
    },
    destroy: () => socket.destroy(),
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
