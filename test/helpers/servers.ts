import { createHash } from 'node:crypto'
import { createServer, request as httpRequest, type Agent, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Listening {
  readonly url: string
  readonly port: number
  close(): Promise<void>
}

/** Starts a real HTTP server on 127.0.0.1, on a free port. */
export async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Listening & { server: Server }> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

export interface Echoed {
  method: string
  url: string
  headers: IncomingHttpHeaders
  rawHeaders: string[]
  body: string
  bodyLength: number
  bodySha256: string
}

/** An upstream that answers with what it received, and remembers it. */
export async function startEchoUpstream(): Promise<Listening & { received: Echoed[] }> {
  const received: Echoed[] = []
  const s = await listen((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const echoed: Echoed = {
        method: req.method!,
        url: req.url!,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks).toString('utf8'),
        bodyLength: Buffer.concat(chunks).length,
        bodySha256: createHash('sha256').update(Buffer.concat(chunks)).digest('hex'),
      }
      received.push(echoed)
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify(echoed))
    })
  })
  return { ...s, received }
}

export interface RawResponse {
  status: number
  headers: IncomingHttpHeaders
  body: string
  json<T = Record<string, unknown>>(): T
  /** The client side's port: equal ports mean the requests shared a connection. */
  localPort: number
}

export interface RawRequest {
  method?: string
  /** Sent exactly as given: no normalisation of any kind. */
  path: string
  /** Name/value pairs; the same name may repeat. */
  headers?: Array<[string, string]>
  body?: string | Buffer
  /** A keep-alive agent to send several requests on one connection; by default each request has its own. */
  agent?: Agent
}

/** An HTTP/1.1 request whose path and headers go on the wire as given. */
export function send(baseUrl: string, req: RawRequest): Promise<RawResponse> {
  const url = new URL(baseUrl)
  const flat: string[] = []
  const given = req.headers ?? []
  if (!given.some(([k]) => k.toLowerCase() === 'host')) flat.push('Host', url.host)
  for (const [k, v] of given) flat.push(k, v)
  return new Promise((resolve, reject) => {
    const r = httpRequest(
      { host: url.hostname, port: url.port, method: req.method ?? 'GET', path: req.path, headers: flat, agent: req.agent ?? false },
      (res) => {
        const localPort = res.socket.localPort!
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8')
          resolve({ status: res.statusCode!, headers: res.headers, body, json: () => JSON.parse(body), localPort })
        })
        res.on('error', reject)
      },
    )
    r.on('error', reject)
    r.end(req.body)
  })
}

export function bearer(token: string): [string, string] {
  return ['Authorization', `Bearer ${token}`]
}
