// gRPC unary calls over h2c (node:http2): SESSIONS connections with STREAMS
// calls in flight each, for SECONDS; a call counts when its grpc-status is 0.
// Prints {rps, p50, p99, non2xx}.
//   node bench/load-grpc.mjs URL CONNECTIONS SECONDS [TOKEN_FILE]
import { connect } from 'node:http2'
import { readFileSync } from 'node:fs'
const [url, connections, seconds, tokenFile] = process.argv.slice(2)
const auth = tokenFile ? { authorization: `Bearer ${readFileSync(tokenFile, 'utf8').trim()}` } : {}
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
            const stream = session.request({ ':method': 'POST', ':path': target.pathname, 'content-type': 'application/grpc', te: 'trailers', ...auth })
            let status
            stream.on('response', (h) => (status = h['grpc-status'] ?? status))
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
            stream.end(message)
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
