// HTTP/1.1 load with a token stream (undici Pool, keep-alive, one request in
// flight per connection). Prints {rps, p50, p99, p999, non2xx, sent, seconds,
// repeats} (latencies in ms).
//
//   node bench/load-http.mjs URL CONNECTIONS SECONDS [options]
//
//   --tokens FILE        bearer tokens, one per line; without it no Authorization
//   --from N --count M   send tokens[N .. N+M) once each, in order, then stop (a
//                        fresh-token stream: never a token twice); SECONDS is
//                        then only a bound on the run
//   --hot FILE --fresh-share S
//                        mixed: each request takes the next fresh token (from
//                        --tokens, --from) with probability S, else a random one
//                        of FILE (tokens the target has seen); stops at SECONDS or
//                        when the fresh ones run out
//   --rate R             open loop: R requests per second on a fixed schedule,
//                        whatever the answers do; a latency counts from when the
//                        request was due, not when a connection was free (no
//                        coordinated omission)
//   --header K:V         an extra header (repeatable)
//
// A token from --tokens wraps around only when the list runs out; "repeats"
// says how many requests reused one (0 for a fresh-token run).
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { Pool } from 'undici'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    tokens: { type: 'string' },
    from: { type: 'string', default: '0' },
    count: { type: 'string' },
    hot: { type: 'string' },
    'fresh-share': { type: 'string', default: '0.1' },
    rate: { type: 'string' },
    header: { type: 'string', multiple: true, default: [] },
  },
})
const [url, connectionsText, secondsText] = positionals
const connections = Number(connectionsText)
const seconds = Number(secondsText)
const target = new URL(url)
const lines = (file) => readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0)
const tokens = values.tokens ? lines(values.tokens) : undefined
const hot = values.hot ? lines(values.hot) : undefined
const from = Number(values.from)
const count = values.count === undefined ? Infinity : Number(values.count)
const freshShare = Number(values['fresh-share'])
const extra = Object.fromEntries(values.header.map((h) => [h.slice(0, h.indexOf(':')), h.slice(h.indexOf(':') + 1).trim()]))

let fresh = 0 // fresh tokens taken
let repeats = 0
/** The next request's token, or null when a fresh-token stream has run out. */
function nextToken() {
  if (!tokens) return undefined
  if (hot && Math.random() >= freshShare) return hot[Math.floor(Math.random() * hot.length)]
  if (fresh >= count) return null
  const i = from + fresh++
  if (i >= tokens.length) repeats++
  return tokens[i % tokens.length]
}

const pool = new Pool(target.origin, { connections, pipelining: 1, keepAliveTimeout: 60_000 })
const latencies = new Float64Array(4_000_000)
let done = 0
let non2xx = 0
let failed = 0

async function one(token, dueAt) {
  const headers = { ...extra }
  if (token !== undefined) headers.authorization = `Bearer ${token}`
  try {
    const res = await pool.request({ method: 'GET', path: target.pathname + target.search, headers })
    await res.body.dump()
    if (res.statusCode >= 300) non2xx++
  } catch {
    failed++
  }
  if (done < latencies.length) latencies[done] = performance.now() - dueAt
  done++
}

// Open the connections first (and compile undici's parser): no set-up in the measured time. These
// requests carry no token (a fresh-token stream stays fresh); their answers do not count.
await Promise.all(
  Array.from({ length: connections }, async () => {
    try {
      const res = await pool.request({ method: 'GET', path: target.pathname + target.search, headers: extra })
      await res.body.dump()
    } catch {
      // Counted when it matters: in the run.
    }
  }),
)

let started = performance.now()
const until = started + seconds * 1000
let ended = started
if (values.rate === undefined) {
  // Closed loop: each connection sends its next request when the last is answered.
  await Promise.all(
    Array.from({ length: connections }, async () => {
      for (;;) {
        if (performance.now() >= until) return
        const token = nextToken()
        if (token === null) return
        await one(token, performance.now())
      }
    }),
  )
  ended = performance.now()
} else {
  const rate = Number(values.rate)
  // Open loop. Requests are sent on a fixed schedule (due times), whatever the answers do; a warm-up
  // second first, at the same rate and not counted (the generator's own code gets compiled).
  const inflight = new Set()
  const schedule = (from, seconds, counted) =>
    new Promise((resolve) => {
      let sent = 0
      const total = Math.floor(seconds * rate)
      const tick = () => {
        const now = performance.now()
        const due = Math.min(Math.floor(((now - from) * rate) / 1000), total)
        while (sent < due) {
          const token = counted ? nextToken() : undefined
          if (token === null) return resolve()
          const dueAt = from + (sent * 1000) / rate
          const p = counted ? one(token, dueAt) : warmOne()
          inflight.add(p)
          void p.then(() => inflight.delete(p))
          sent++
        }
        if (sent >= total) return resolve()
        setTimeout(tick, 1)
      }
      tick()
    })
  const warmOne = async () => {
    try {
      const res = await pool.request({ method: 'GET', path: target.pathname + target.search, headers: extra })
      await res.body.dump()
    } catch {
      // Not counted.
    }
  }
  await schedule(performance.now(), 1, false)
  await Promise.all(inflight)
  const from = performance.now()
  started = from
  await schedule(from, seconds, true)
  await Promise.all(inflight)
  ended = performance.now()
}
await pool.close()

const n = Math.min(done, latencies.length)
const sorted = latencies.subarray(0, n).sort()
const at = (p) => (n > 0 ? sorted[Math.min(n - 1, Math.floor(n * p))] : NaN)
const elapsed = (ended - started) / 1000
process.stdout.write(
  JSON.stringify({ rps: (done - failed) / elapsed, p50: at(0.5), p99: at(0.99), p999: at(0.999), non2xx: non2xx + failed, sent: done, seconds: elapsed, repeats }),
)
