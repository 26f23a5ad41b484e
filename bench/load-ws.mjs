// WebSocket round trips: CONNECTIONS sockets, each sending a message and
// waiting for its echo, for SECONDS; prints {rps (round trips per second), p50, p99, non2xx}.
//   node bench/load-ws.mjs URL CONNECTIONS SECONDS [TOKEN_FILE]
import { readFileSync } from 'node:fs'
import WebSocket from 'ws'
const [url, connections, seconds, tokenFile] = process.argv.slice(2)
const headers = tokenFile ? { authorization: `Bearer ${readFileSync(tokenFile, 'utf8').trim()}` } : {}
const latencies = []
let failed = 0
const until = Date.now() + Number(seconds) * 1000
const payload = Buffer.alloc(64, 7)
await Promise.all(
  Array.from({ length: Number(connections) }, () =>
    new Promise((resolve) => {
      const ws = new WebSocket(url, { headers })
      let started = 0
      const next = () => {
        if (Date.now() >= until) return ws.close()
        started = performance.now()
        ws.send(payload)
      }
      ws.on('open', next)
      ws.on('message', () => {
        latencies.push(performance.now() - started)
        next()
      })
      ws.on('unexpected-response', () => {
        failed++
        resolve()
      })
      ws.on('error', () => {
        failed++
        resolve()
      })
      ws.on('close', () => resolve())
    }),
  ),
)
latencies.sort((a, b) => a - b)
const at = (p) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN
process.stdout.write(JSON.stringify({ rps: latencies.length / Number(seconds), p50: at(0.5), p99: at(0.99), non2xx: failed }))
