import type { JWK } from 'jose'
import { listen, type Listening } from './servers.js'

export interface JwksServer extends Listening {
  readonly jwksUri: string
  keys: JWK[]
  /** Requests served so far. */
  hits: number
  /** While true the endpoint answers 503. */
  down: boolean
}

/** A real JWKS endpoint whose key list and health a test controls. */
export async function startJwksServer(keys: JWK[]): Promise<JwksServer> {
  const state = { keys, hits: 0, down: false }
  const s = await listen((_req, res) => {
    state.hits++
    if (state.down) {
      res.statusCode = 503
      res.end('down')
      return
    }
    res.setHeader('content-type', 'application/jwk-set+json')
    res.end(JSON.stringify({ keys: state.keys }))
  })
  return Object.assign(state, s, { jwksUri: `${s.url}/.well-known/jwks.json` })
}
