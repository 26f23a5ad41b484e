// gRPC unary calls (or, with MODE get, plain GETs) over h2c (node:http2):
// CONNECTIONS streams in flight over a connection per ten, for SECONDS; a call
// counts when its grpc-status is 0 (a GET: when its status is 2xx).
// Prints {rps, p50, p99, non2xx}.
//   node bench/load-grpc.mjs URL CONNECTIONS SECONDS [TOKEN_FILE] [MODE]
import { connect } from 'node:http2'
import { readFileSync } from 'node:fs'
const [url, connections, seconds, tokenFile, mode = 'grpc'] = process.argv.slice(2)
const auth = tokenFile && tokenFile !== '-' ? { authorization: `Bearer ${readFileSync(tokenFile, 'utf8').trim()}` } : {}
const grpc = mode === 'grpc'
const sessions = Math.max(1, Math.ceil(Number(connections) / 10))
const perSession = Math.ceil(Number(connections) / sessions)
const message = Buffer.concat([Buffer.from([0, 0, 0, 0, 16]), Buffer.alloc(16, 1)])
const target = new URL(url)
const latencies = []
let failed = 0
const until = Date.now() + Number(seconds) * 1000
await Promise.all(
  Array.from({ length: sessions }, () => {
    const session = connect(target.origin)
    session.on('error', () => undefined)
    return Promise.all(
      Array.from({ length: perSession }, () =>
        new Promise((resolve) => {
          const one = () => {
            if (Date.now() >= until || session.destroyed) return resolve()
            const started = performance.now()
            const stream = grpc
              ? session.request({ ':method': 'POST', ':path': target.pathname, 'content-type': 'application/grpc', te: 'trailers', ...auth })
              : session.request({ ':path': target.pathname, ...auth }, { endStream: true })
            let status
            stream.on('response', (h) => (status = grpc ? (h['grpc-status'] ?? status) : Number(h[':status']) < 300 ? '0' : String(h[':status'])))
            stream.on('trailers', (t) => (status = t['grpc-status'] ?? status))
            stream.on('end', () => {
              if (status === '0') latencies.push(performance.now() - started)
              else failed++
              one()
            })
            stream.on('error', () => {
              failed++
              one()
            })
            stream.resume()
            if (grpc) stream.end(message)
          }
          one()
        }),
      ),
    ).then(() => session.close())
  }),
)
latencies.sort((a, b) => a - b)
const at = (p) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN
process.stdout.write(JSON.stringify({ rps: latencies.length / Number(seconds), p50: at(0.5), p99: at(0.99), non2xx: failed }))
