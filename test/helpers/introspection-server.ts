import { listen, type Listening } from './servers.js'

export interface IntrospectionServer extends Listening {
  readonly endpoint: string
  /** token → the JSON the endpoint answers (active ones should include active: true). */
  tokens: Map<string, Record<string, unknown>>
  /** Calls per token. */
  calls: Map<string, number>
  totalCalls(): number
  /** 'ok', or a failure to simulate. */
  mode: 'ok' | 'error' | 'garbage' | 'slow' | 'no-active'
  /** The client credentials the endpoint accepts. */
  client: { id: string; secret: string }
  /** How the last call authenticated. */
  lastAuth: 'basic' | 'post' | 'none' | undefined
}

/** A real RFC 7662 endpoint: form POST, client authentication, counted calls. */
export async function startIntrospectionServer(client = { id: 'gateway', secret: 's3cret: +/%' }): Promise<IntrospectionServer> {
  const state = {
    tokens: new Map<string, Record<string, unknown>>(),
    calls: new Map<string, number>(),
    mode: 'ok' as IntrospectionServer['mode'],
    client,
    lastAuth: undefined as IntrospectionServer['lastAuth'],
  }
  const s = await listen((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
      const token = form.get('token') ?? ''
      state.calls.set(token, (state.calls.get(token) ?? 0) + 1)
      let id: string | undefined
      let secret: string | undefined
      const auth = req.headers.authorization
      if (auth?.startsWith('Basic ')) {
        const [u, p] = Buffer.from(auth.slice(6), 'base64').toString('utf8').split(':')
        const dec = (x: string | undefined) => decodeURIComponent((x ?? '').replace(/\+/g, ' '))
        id = dec(u)
        secret = dec(p)
        state.lastAuth = 'basic'
      } else if (form.has('client_id')) {
        id = form.get('client_id')!
        secret = form.get('client_secret') ?? undefined
        state.lastAuth = 'post'
      } else {
        state.lastAuth = 'none'
      }
      res.setHeader('content-type', 'application/json')
      if (id !== state.client.id || secret !== state.client.secret) {
        res.statusCode = 401
        res.end('{"error":"invalid_client"}')
        return
      }
      switch (state.mode) {
        case 'error':
          res.statusCode = 500
          res.end('{"error":"server_error"}')
          return
        case 'garbage':
          res.end('<html>not json</html>')
          return
        case 'no-active':
          res.end('{"scope":"a"}')
          return
        case 'slow':
          setTimeout(() => res.end('{"active":false}'), 3000)
          return
        case 'ok':
          res.end(JSON.stringify(state.tokens.get(token) ?? { active: false }))
      }
    })
  })
  return Object.assign(state, s, {
    endpoint: `${s.url}/oauth2/introspect`,
    totalCalls: () => [...state.calls.values()].reduce((a, b) => a + b, 0),
  })
}
