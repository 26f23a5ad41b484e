import cluster, { type Worker } from 'node:cluster'
import Fastify from 'fastify'
import type { Logger } from 'pino'
import { AggregatorRegistry } from 'prom-client'
import type { Readiness, ReadinessStatus } from './admin/readiness.js'
import type { CompiledConfig } from './config/compile.js'
import { flushLogger } from './logger.js'

const READYZ_REQUEST = 'gateway:readyz'
const READYZ_RESPONSE = 'gateway:readyz:response'
const RANK: Record<ReadinessStatus, number> = { ready: 0, degraded: 1, not_ready: 2 }

interface ReadyzMessage {
  type: typeof READYZ_RESPONSE
  id: number
  state: Readiness
}

/** In a worker: answer the primary's readiness questions. */
export function answerReadiness(readiness: () => Readiness): void {
  process.on('message', (message: { type?: string; id?: number }) => {
    if (message?.type === READYZ_REQUEST && typeof message.id === 'number') {
      process.send?.({ type: READYZ_RESPONSE, id: message.id, state: readiness() } satisfies ReadyzMessage)
    }
  })
}

/**
 * The primary of a multi-process gateway (`server.workers` > 1). Workers each
 * run the whole gateway on the shared listening port and share nothing but
 * Redis; the primary serves the admin listener: `/metrics` summed over the
 * workers, `/readyz` the worst of their answers. It relays SIGHUP (reload) and
 * SIGTERM (drain) and replaces a worker that dies.
 */
export async function runPrimary(config: CompiledConfig, logger: Logger): Promise<number> {
  const count = config.server.workers
  const workers = new Set<Worker>()
  let stopping = false
  const fork = () => {
    const worker = cluster.fork()
    workers.add(worker)
    worker.on('exit', (code, signal) => {
      workers.delete(worker)
      if (!stopping) {
        logger.error({ pid: worker.process.pid, code, signal }, 'worker died; starting another')
        fork()
      }
    })
  }
  for (let i = 0; i < count; i++) fork()

  const aggregator = new AggregatorRegistry()
  let nextId = 0
  const pending = new Map<number, (state: Readiness) => void>()
  cluster.on('message', (_worker, message: ReadyzMessage) => {
    if (message?.type === READYZ_RESPONSE) pending.get(message.id)?.(message.state)
  })
  const askReadiness = (worker: Worker) =>
    new Promise<Readiness | undefined>((resolve) => {
      const id = ++nextId
      const timer = setTimeout(() => {
        pending.delete(id)
        resolve(undefined)
      }, 1000)
      pending.set(id, (state) => {
        clearTimeout(timer)
        pending.delete(id)
        resolve(state)
      })
      worker.send({ type: READYZ_REQUEST, id })
    })

  const admin = Fastify()
  admin.get('/healthz', async () => ({ status: 'ok', workers: workers.size }))
  admin.get('/readyz', async (_request, reply) => {
    const states = await Promise.all([...workers].map(askReadiness))
    let status: ReadinessStatus = stopping || states.length < count ? 'not_ready' : 'ready'
    for (const s of states) {
      const st: ReadinessStatus = s?.status ?? 'not_ready'
      if (RANK[st] > RANK[status]) status = st
    }
    return reply.code(status === 'not_ready' ? 503 : 200).send({ status, workers: states.map((s) => s ?? { status: 'not_ready', checks: null }) })
  })
  admin.get('/metrics', async (_request, reply) => reply.type(aggregator.contentType).send(await aggregator.clusterMetrics()))
  const adminUrl = await admin.listen({ host: config.admin.host, port: config.admin.port })
  logger.info({ workers: count, admin: adminUrl }, 'primary started')

  process.on('SIGHUP', () => {
    for (const w of workers) w.process.kill('SIGHUP')
  })
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      if (stopping) return
      stopping = true
      logger.info({ signal }, 'draining workers')
      for (const w of workers) w.process.kill('SIGTERM')
      const deadline = setTimeout(() => {
        for (const w of workers) w.process.kill('SIGKILL')
      }, config.server.drainTimeoutMs + 5000)
      const check = setInterval(() => {
        if (workers.size > 0) return
        clearInterval(check)
        clearTimeout(deadline)
        void admin.close().then(() => {
          logger.info('stopped')
          void flushLogger(logger).then(() => resolve(0))
        })
      }, 50)
    }
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
  })
}
