import type { Logger } from 'pino'
import type { FastifyInstance } from 'fastify'
import cluster from 'node:cluster'
import { buildAdmin } from './admin/app.js'
import { tuneCollector } from './collector.js'
import { ListenError } from './listen-error.js'
import { readiness } from './admin/readiness.js'
import { answerPrimary, reportListenFailure, runPrimary, shareRevocations } from './cluster.js'
import { buildGateway, type Gateway } from './app.js'
import { loadCompiledConfig } from './config/index.js'
import { createLogger, flushLogger } from './logger.js'
import { Metrics } from './metrics/metrics.js'
import { ConfigReloader } from './reload.js'
import { LoggedObserver } from './dependency-log.js'

export interface RunningGateway {
  readonly gateway: Gateway
  /** Undefined in a worker: the primary serves the admin listener. */
  readonly admin: FastifyInstance | undefined
  readonly reloader: ConfigReloader
  /** The plain listener's URL, e.g. http://127.0.0.1:8080, else the HTTPS one's. */
  readonly url: string
  /** The HTTPS listener's URL, when there is one. */
  readonly tlsUrl: string | undefined
  /** The h2c (HTTP/2 cleartext) listener's URL, when there is one. */
  readonly h2cUrl: string | undefined
  readonly adminUrl: string | undefined
  /** Stops accepting, lets requests in flight finish (up to the drain timeout), closes Redis. */
  drain(): Promise<void>
}

/** Loads the config file, builds the proxy and admin apps, listens and watches the file. */
export async function startGateway(file: string, logger: Logger = createLogger(), env: NodeJS.ProcessEnv = process.env): Promise<RunningGateway> {
  const metrics = new Metrics()
  const observer = new LoggedObserver(metrics, logger)
  const config = await loadCompiledConfig(file, { observer, env })
  const gateway = await buildGateway({ config, logger, metrics })
  for (const w of config.warnings) logger.warn({ path: w.path, line: w.line }, `configuration warning: ${w.message}`)
  let draining = false
  // In a worker of a multi-process gateway the primary serves the admin listener.
  const admin = cluster.isWorker ? undefined : buildAdmin(gateway, { logger, isDraining: () => draining })
  if (cluster.isWorker) {
    answerPrimary({
      readyz: () => (draining ? { ...readiness(gateway), status: 'not_ready' } : readiness(gateway)),
      metrics: () => metrics.registry.getMetricsAsJSON() as never,
      jwks: () => gateway.current.assertionKeys ?? null,
      revocations: () => gateway.current.revocations.list(),
    })
    // Workers share revocations through the primary (and, with Redis, each publishes its own to the other replicas).
    shareRevocations(gateway.current.revocations, (denial) => void gateway.current.revocations.apply(denial, true))
  }
  let listening: Awaited<ReturnType<Gateway['listen']>>
  let adminUrl: string | undefined
  try {
    listening = await gateway.listen()
    adminUrl = await admin?.listen({ host: config.admin.host, port: config.admin.port })
  } catch (err) {
    // Whatever did listen, and the upstream and Redis connections, are let go before saying why.
    await gateway.app.close().catch(() => undefined)
    await gateway.close().catch(() => undefined)
    await admin?.close().catch(() => undefined)
    throw ListenError.from(err)
  }
  const url = (listening.url ?? listening.tlsUrl ?? listening.h2cUrl)!
  const reloader = new ConfigReloader(file, gateway, logger, metrics, observer, env)
  await reloader.start()
  logger.info({ address: url, ...(listening.tlsUrl && listening.url ? { tls: listening.tlsUrl } : {}), admin: adminUrl, routes: config.router.routes.length, config: file, pid: process.pid }, 'gateway listening')

  return {
    gateway,
    admin,
    reloader,
    url,
    tlsUrl: listening.tlsUrl,
    h2cUrl: listening.h2cUrl,
    adminUrl,
    async drain() {
      draining = true
      reloader.stop()
      const deadline = gateway.current.server.drainTimeoutMs
      let timer: NodeJS.Timeout | undefined
      gateway.startDrain()
      const closed = gateway.app.close()
      const late = await Promise.race([
        closed.then(() => false),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), deadline))),
      ])
      clearTimeout(timer)
      if (late) {
        logger.warn({ deadline_ms: deadline }, 'drain deadline reached; closing the remaining connections')
        gateway.closeAllConnections()
        await closed
      }
      await gateway.close() // the upstream connections and Redis
      await admin?.close()
    },
  }
}

/**
 * Runs until SIGTERM or SIGINT. SIGHUP re-reads the configuration. On
 * SIGTERM the gateway stops accepting, finishes requests in flight up to
 * `server.drain_timeout`, closes Redis and exits 0.
 */
export async function runUntilSignal(file: string): Promise<number> {
  const collector = tuneCollector()
  const logger = createLogger()
  if (cluster.isPrimary) {
    const config = await loadCompiledConfig(file)
    // Its workers serve, each with its own collector (and line).
    if (config.server.workers > 1) return runPrimary(config, logger)
  }
  const log = cluster.isWorker ? logger.child({ worker: cluster.worker?.id }) : logger
  const gc = { cpus: Math.round(collector.cpus * 100) / 100, processes: collector.processes, set: collector.set, missing: collector.missing }
  if (collector.missing.length === 0) log.info(gc, 'garbage collector set up')
  else log.warn(gc, `one CPU or less for this process: start node with ${collector.missing.join(' ')} (README, "Memory and pauses")`)
  let running: RunningGateway
  try {
    running = await startGateway(file, log)
  } catch (err) {
    // A worker that cannot listen tells its primary, which stops the gateway rather than start another.
    if (cluster.isWorker && err instanceof ListenError) reportListenFailure(err)
    throw err
  }
  process.on('SIGHUP', () => void running.reloader.reload('signal'))
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'draining')
      running.drain().then(
        () => {
          logger.info('stopped')
          // Asynchronous log writes must reach stdout before the process exits.
          void flushLogger(logger).then(() => resolve(0))
        },
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed')
          resolve(1)
        },
      )
    }
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
  })
}

export { ListenError } from './listen-error.js'
