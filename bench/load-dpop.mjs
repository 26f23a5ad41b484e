// A load generator for DPoP routes: every request carries a proof signed for
// it (fresh jti, iat, htu, ath), since a proof is accepted once. Keep-alive
// connections, closed-loop like wrk; prints {rps, p50, p99, non2xx} as JSON.
// Its baselines are driven by this same generator (the proof is then signed
// and sent but not checked), so the client's signing cost is the same on both
// sides of a ratio.
//   node bench/load-dpop.mjs URL CONNECTIONS SECONDS SCHEME TOKEN
import { createHash, createPrivateKey, randomBytes, sign } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Pool } from 'undici'

const [url, connections, seconds, scheme, tokenFile, keyFile] = process.argv.slice(2)
const token = readFileSync(tokenFile, 'utf8').trim()
const { privateKey, publicKey } = keyFile ? JSON.parse(readFileSync(keyFile, 'utf8')) : (() => { throw new Error('key file') })()
const key = { key: createPrivateKey({ key: privateKey, format: 'jwk' }), dsaEncoding: 'ieee-p1363' }
const header = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk: publicKey })).toString('base64url')
const htu = url.split('?')[0]
const ath = createHash('sha256').update(token).digest('base64url')
const prefix = randomBytes(6).toString('base64url')
let n = 0
function proof() {
  const payload = Buffer.from(JSON.stringify({ jti: `${prefix}-${n++}`, htm: 'GET', htu, iat: Math.floor(Date.now() / 1000), ath })).toString('base64url')
  const input = `${header}.${payload}`
  return `${input}.${sign('sha256', Buffer.from(input), key).toString('base64url')}`
}

const target = new URL(url)
const pool = new Pool(target.origin, { connections: Number(connections), pipelining: 1, connect: { rejectUnauthorized: false } })
const path = target.pathname + target.search
const latencies = []
let done = 0
let non2xx = 0
const until = Date.now() + Number(seconds) * 1000
await new Promise((resolve) => {
  let open = Number(connections)
  const one = () => {
    if (Date.now() >= until) {
      if (--open === 0) resolve()
      return
    }
    const started = performance.now()
    pool.request({ method: 'GET', path, headers: { authorization: `${scheme} ${token}`, dpop: proof() } }).then(
      async (res) => {
        await res.body.dump()
        latencies.push(performance.now() - started)
        done++
        if (res.statusCode < 200 || res.statusCode >= 300) non2xx++
        one()
      },
      () => {
        non2xx++
        one()
      },
    )
  }
  for (let i = 0; i < Number(connections); i++) one()
})
await pool.close()
latencies.sort((a, b) => a - b)
const at = (p) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN
process.stdout.write(JSON.stringify({ rps: done / Number(seconds), p50: at(0.5), p99: at(0.99), non2xx }))
