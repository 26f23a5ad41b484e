// Token pools for the fresh-token rows: many distinct signed JWTs, signed
// before the rounds by worker threads on every core (RS256 signing costs
// about 0.4 ms a token here; a pool of 100,000 takes ~20 s on two cores).
import { Worker } from 'node:worker_threads'
import { writeFileSync } from 'node:fs'
import { cpus } from 'node:os'

export type PoolAlg = 'RS256' | 'ES256' | 'EdDSA'

export interface PoolRequest {
  readonly alg: PoolAlg
  /** The private key as a JWK, and the kid it is published under. */
  readonly privateJwk: Record<string, unknown>
  readonly kid: string
  readonly count: number
  readonly issuer: string
  readonly audience: string
  /** Distinguishes pools signed with the same key (their jti and sub differ). */
  readonly label: string
}

// The worker signs with node:crypto directly (jose's SignJWT per token would
// double the cost): header and payload as any issuer makes them.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
const { createPrivateKey, sign } = require('node:crypto')
const { alg, privateJwk, kid, from, to, issuer, audience, label } = workerData
const key = createPrivateKey({ key: privateJwk, format: 'jwk' })
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url')
const header = b64({ alg, kid, typ: 'at+jwt' })
const now = Math.floor(Date.now() / 1000)
const out = []
for (let i = from; i < to; i++) {
  const input = header + '.' + b64({ iss: issuer, aud: audience, sub: label + '-' + i, client_id: 'bench', scope: 'read', jti: label + '-' + i, iat: now, exp: now + 7200 })
  const sig = alg === 'EdDSA' ? sign(null, Buffer.from(input), key) : sign('sha256', Buffer.from(input), alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key)
  out.push(input + '.' + sig.toString('base64url'))
}
parentPort.postMessage(out.join('\\n'))
`

/** Signs `count` distinct tokens and writes them to `file`, one per line. */
export async function signPool(file: string, request: PoolRequest): Promise<void> {
  const workers = Math.max(1, cpus().length)
  const per = Math.ceil(request.count / workers)
  const parts = await Promise.all(
    Array.from({ length: workers }, (_, w) => {
      const from = w * per
      const to = Math.min(request.count, from + per)
      return new Promise<string>((resolve, reject) => {
        const worker = new Worker(WORKER, { eval: true, workerData: { ...request, from, to } })
        worker.once('message', resolve)
        worker.once('error', reject)
      })
    }),
  )
  writeFileSync(file, parts.filter((p) => p.length > 0).join('\n') + '\n')
}
