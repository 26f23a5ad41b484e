import { timingSafeEqual } from 'node:crypto'
import { Worker } from 'node:worker_threads'
import type { ParsedHash } from './secret-hash.js'

/** Checks waiting for the hashing thread, at most; more are refused (503) at once. */
export const MAX_QUEUED = 16
/** Checks one client address may have waiting or running at once. */
export const MAX_PER_ADDRESS = 2

/** The hashing thread: scrypt, synchronously, on its own thread (never on libuv's pool). */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { scryptSync } = require('node:crypto')
parentPort.on('message', (job) => {
  try {
    const key = scryptSync(job.secret, Buffer.from(job.salt), job.length, { N: job.N, r: job.r, p: job.p, maxmem: job.maxmem })
    parentPort.postMessage({ id: job.id, key })
  } catch (err) {
    parentPort.postMessage({ id: job.id, error: String(err && err.message) })
  }
})
`

export class VerifierBusy extends Error {
  override name = 'VerifierBusy'
}

/**
 * Client secret checks for the token and introspection endpoints, one at a
 * time on a thread of their own, behind a bounded queue: scrypt's 32 MiB,
 * tens-of-milliseconds work can neither pile up without bound nor take the
 * libuv thread pool that key imports, file reads and DNS on the request path
 * share. Each client address may hold only a few places. Unknown client ids
 * go through the same queue with a dummy hash: they cost exactly as much.
 */
export class SecretVerifier {
  private worker: Worker | undefined
  private nextId = 0
  private readonly jobs = new Map<number, { resolve: (key: Buffer) => void; reject: (err: Error) => void }>()
  private readonly perAddress = new Map<string, number>()

  /** Checks waiting or running. */
  get pending(): number {
    return this.jobs.size
  }

  /**
   * Whether `secret` matches `stored`, compared in constant time. Throws
   * VerifierBusy when the queue, or this address's share of it, is full.
   */
  async verify(secret: string, stored: ParsedHash, address: string): Promise<boolean> {
    if (this.jobs.size >= MAX_QUEUED) throw new VerifierBusy('too many secret checks waiting')
    const mine = this.perAddress.get(address) ?? 0
    if (mine >= MAX_PER_ADDRESS) throw new VerifierBusy('too many secret checks from this address')
    this.perAddress.set(address, mine + 1)
    try {
      const key = await this.derive(secret, stored)
      return key.length === stored.hash.length && timingSafeEqual(key, stored.hash)
    } finally {
      const left = (this.perAddress.get(address) ?? 1) - 1
      if (left === 0) this.perAddress.delete(address)
      else this.perAddress.set(address, left)
    }
  }

  private derive(secret: string, h: ParsedHash): Promise<Buffer> {
    const worker = this.start()
    const id = ++this.nextId
    const N = 2 ** h.ln
    return new Promise((resolve, reject) => {
      this.jobs.set(id, { resolve, reject })
      worker.postMessage({ id, secret, salt: h.salt, length: h.hash.length, N, r: h.r, p: h.p, maxmem: 256 * N * h.r + 1024 * 1024 })
    })
  }

  private start(): Worker {
    if (this.worker) return this.worker
    const worker = new Worker(WORKER_SOURCE, { eval: true })
    worker.unref()
    worker.on('message', (m: { id: number; key?: Uint8Array; error?: string }) => {
      const job = this.jobs.get(m.id)
      if (!job) return
      this.jobs.delete(m.id)
      if (m.key) job.resolve(Buffer.from(m.key))
      else job.reject(new Error(m.error ?? 'secret check failed'))
    })
    const fail = (err: Error) => {
      this.worker = undefined
      for (const job of this.jobs.values()) job.reject(err)
      this.jobs.clear()
    }
    worker.on('error', fail)
    worker.on('exit', () => fail(new Error('the hashing thread stopped')))
    this.worker = worker
    return worker
  }

  async close(): Promise<void> {
    const worker = this.worker
    this.worker = undefined
    await worker?.terminate()
  }
}
