import cluster, { type Worker } from 'node:cluster'
import Fastify from 'fastify'
import type { Logger } from 'pino'
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client'
import type { Readiness, ReadinessStatus } from './admin/readiness.js'
import type { CompiledConfig } from './config/compile.js'
import { workerExecArgv } from './collector.js'
import { ListenError } from './listen-error.js'
import { flushLogger } from './logger.js'
import { registerRevocationApi } from './admin/revocations.js'
import { parseDenial, type Denial, type RevocationList } from './cache/revocation-list.js'

const QUESTION = 'gateway:ask'
const ANSWER = 'gateway:answer'
/** A worker's new revocation, sent to the primary, which hands it to every other worker. */
const REVOKED = 'gateway:revoked'
/** A worker could not listen: the primary stops the gateway, saying why once, rather than start another. */
const LISTEN_FAILED = 'gateway:listen-failed'
/** How long a worker that could not listen waits for its primary to stop it. */
const LISTEN_FAILED_WAIT_MS = 5000

interface ListenFailed {
  type: typeof LISTEN_FAILED
  message: string
}

/**
 * In a worker that could not listen (its port is the primary's to open, so
 * every worker fails alike): tells the primary, then waits for it to stop
 * this process (at most 5 s). Started again, it would fail again.
 */
export async function reportListenFailure(err: ListenError): Promise<void> {
  await new Promise<void>((resolve) => {
    if (!process.send?.({ type: LISTEN_FAILED, message: err.message } satisfies ListenFailed, () => resolve())) resolve()
  })
  await new Promise((resolve) => setTimeout(resolve, LISTEN_FAILED_WAIT_MS))
}

interface Revoked {
  type: typeof REVOKED
  denial: Denial
}

/**
 * In a worker: send this process's revocations to the primary, and apply
 * those of the other workers, so that a token revoked at the built-in
 * authorization server of one worker is refused by all of them.
 */
export function shareRevocations(list: RevocationList, apply: (denial: Denial) => void): void {
  const alsoTo = list.relay
  list.relay = (denial) => {
    process.send?.({ type: REVOKED, denial } satisfies Revoked)
    alsoTo?.(denial)
  }
  process.on('message', (message: { type?: string; denial?: unknown }) => {
    if (message?.type !== REVOKED && message?.type !== REVOKE_HERE) return
    const denial = parseDenial(message.denial)
    // Made through the primary's API: applied here as this worker's own, so it is shared like one.
    if (denial) message.type === REVOKE_HERE ? list.apply(denial) : apply(denial)
  })
}
const RANK: Record<ReadinessStatus, number> = { ready: 0, degraded: 1, not_ready: 2 }
/** A worker that does not answer within this is left out of an answer (hung, or busy past reason). */
const ASK_TIMEOUT_MS = 1000

type Topic = 'readyz' | 'metrics' | 'jwks' | 'revocations'
/** A denial made through the primary's operator API, for one worker to apply and share. */
const REVOKE_HERE = 'gateway:revoke-here'

interface Answer {
  type: typeof ANSWER
  id: number
  value: unknown
}

/** In a worker: answer the primary's questions (readiness, metrics). */
export function answerPrimary(answers: {
  readyz: () => Readiness
  metrics: () => Promise<MetricObjectWithValues<MetricValue<string>>[]>
  jwks: () => unknown
  revocations: () => readonly Denial[]
}): void {
  process.on('message', (message: { type?: string; id?: number; topic?: Topic }) => {
    if (message?.type !== QUESTION || typeof message.id !== 'number') return
    const id = message.id
    const reply = (value: unknown) => process.send?.({ type: ANSWER, id, value } satisfies Answer)
    if (message.topic === 'readyz') reply(answers.readyz())
    else if (message.topic === 'metrics') void answers.metrics().then(reply, () => reply(undefined))
    else if (message.topic === 'jwks') reply(answers.jwks())
    else if (message.topic === 'revocations') reply(answers.revocations())
  })
}

type MetricJson = MetricObjectWithValues<MetricValue<string>>

/**
 * Counters and histograms of workers that exited, added to every scrape so
 * that summed counters never go down when a worker dies and is replaced.
 */
class RetiredCounts {
  private readonly byMetric = new Map<string, { meta: MetricJson; values: Map<string, MetricValue<string>> }>()

  add(metrics: readonly MetricJson[]): void {
    for (const m of metrics) {
      const type = m.type as unknown as string // the JSON form says 'counter', 'histogram'…
      if (type !== 'counter' && type !== 'histogram') continue
      let entry = this.byMetric.get(m.name)
      if (!entry) this.byMetric.set(m.name, (entry = { meta: { ...m, values: [] }, values: new Map() }))
      for (const v of m.values) {
        const key = `${(v as { metricName?: string }).metricName ?? ''}\u0000${JSON.stringify(v.labels)}`
        const known = entry.values.get(key)
        entry.values.set(key, known ? { ...known, value: known.value + v.value } : { ...v })
      }
    }
  }

  get metrics(): MetricJson[] {
    return [...this.byMetric.values()].map((e) => ({ ...e.meta, values: [...e.values.values()] }))
  }
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
  /** Workers that listen: the only ones asked (a starting one is skipped at once). */
  const serving = new Set<Worker>()
  /** Each worker's metrics as last seen: what it counted is kept when it dies. */
  const lastSeen = new Map<Worker, MetricJson[]>()
  const retired = new RetiredCounts()
  let stopping = false
  cluster.setupPrimary({ execArgv: workerExecArgv(count) })
  const fork = () => {
    // Each worker sets its collector up for its share of the CPUs (collector.ts).
    const worker = cluster.fork({ GATEWAY_PROCESSES: String(count) })
    workers.add(worker)
    worker.on('listening', () => serving.add(worker))
    worker.on('exit', (code, signal) => {
      workers.delete(worker)
      serving.delete(worker)
      retired.add(lastSeen.get(worker) ?? [])
      lastSeen.delete(worker)
      if (!stopping) {
        logger.error({ pid: worker.process.pid, code, signal }, 'worker died; starting another')
        fork()
      }
    })
  }

  let nextId = 0
  const pending = new Map<number, (value: unknown) => void>()
  let failed: ((err: ListenError) => void) | undefined
  cluster.on('message', (from, message: Answer | Revoked | ListenFailed) => {
    if (message?.type === ANSWER) pending.get(message.id)?.(message.value)
    else if (message?.type === LISTEN_FAILED) failed?.(new ListenError(String(message.message)))
    else if (message?.type === REVOKED) {
      for (const worker of workers) if (worker !== from && worker.isConnected()) worker.send(message)
    }
  })
  /** A worker's answer, or undefined when it does not give one in time (or is gone). */
  const ask = <T>(worker: Worker, topic: Topic) =>
    new Promise<T | undefined>((resolve) => {
      if (!worker.isConnected()) return resolve(undefined)
      const id = ++nextId
      const timer = setTimeout(() => {
        pending.delete(id)
        resolve(undefined)
      }, ASK_TIMEOUT_MS)
      pending.set(id, (value) => {
        clearTimeout(timer)
        pending.delete(id)
        resolve(value as T)
      })
      try {
        worker.send({ type: QUESTION, id, topic })
      } catch {
        clearTimeout(timer)
        pending.delete(id)
        resolve(undefined)
      }
    })
  const askReadiness = (worker: Worker) => (serving.has(worker) ? ask<Readiness>(worker, 'readyz') : Promise.resolve(undefined))
  /** Live workers' metrics plus what exited ones had counted; sums by label set. */
  const scrape = async (): Promise<Registry> => {
    const live = [...serving]
    const answers = await Promise.all(live.map((w) => ask<MetricJson[]>(w, 'metrics')))
    answers.forEach((m, i) => {
      if (m && workers.has(live[i]!)) lastSeen.set(live[i]!, m)
    })
    const sets = answers.filter((m): m is MetricJson[] => Array.isArray(m))
    return AggregatorRegistry.aggregate([...sets, retired.metrics])
  }

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
  admin.get('/metrics', async (_request, reply) => {
    const registry = await scrape()
    return reply.type(registry.contentType).send(await registry.metrics())
  })
  // The workers hold the configuration in force (they reload it): these are asked of one of them.
  const anyWorker = () => [...serving].find((w) => w.isConnected())
  admin.get('/.well-known/gateway-jwks.json', async (_request, reply) => {
    const worker = anyWorker()
    const keys = worker ? await ask<unknown>(worker, 'jwks') : undefined
    if (keys === undefined || keys === null) return reply.code(404).send({ error: 'not_found', error_description: 'identity assertions are not configured' })
    return reply.header('cache-control', 'public, max-age=60').type('application/jwk-set+json').send(keys)
  })
  registerRevocationApi(admin, {
    settings: () => config.revocation,
    issuers: () => new Map([...config.issuers].map(([id, i]) => [id, i.issuer])),
    apply: (denial) => {
      const worker = anyWorker()
      if (!worker) throw new Error('no worker is serving')
      worker.send({ type: REVOKE_HERE, denial })
    },
    list: async () => {
      const worker = anyWorker()
      return (worker ? await ask<Denial[]>(worker, 'revocations') : undefined) ?? []
    },
  })
  // The admin listener first: a gateway that cannot open it starts no worker.
  let adminUrl: string
  try {
    adminUrl = await admin.listen({ host: config.admin.host, port: config.admin.port })
  } catch (err) {
    await admin.close().catch(() => undefined)
    throw ListenError.from(err)
  }
  for (let i = 0; i < count; i++) fork()
  logger.info({ workers: count, admin: adminUrl }, 'primary started')

  process.on('SIGHUP', () => {
    for (const w of workers) w.process.kill('SIGHUP')
  })
  return new Promise((resolve, reject) => {
    /** Stops every worker, then the admin listener; `done` then ends the primary. */
    const stopAll = (done: () => void) => {
      stopping = true
      for (const w of workers) w.process.kill('SIGTERM')
      const deadline = setTimeout(() => {
        for (const w of workers) w.process.kill('SIGKILL')
      }, config.server.drainTimeoutMs + 5000)
      const check = setInterval(() => {
        if (workers.size > 0) return
        clearInterval(check)
        clearTimeout(deadline)
        void admin.close().then(done)
      }, 50)
    }
    const stop = (signal: string) => {
      if (stopping) return
      logger.info({ signal }, 'draining workers')
      stopAll(() => {
        logger.info('stopped')
        void flushLogger(logger).then(() => resolve(0))
      })
    }
    // Said once, by the command (cli.ts), as when one process cannot listen.
    failed = (err) => {
      if (stopping) return
      stopAll(() => void flushLogger(logger).then(() => reject(err)))
    }
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
  })
}
