import type { Logger } from 'pino'
import { buildGateway, type Gateway } from './app.js'
import { loadCompiledConfig } from './config/index.js'
import { createLogger } from './logger.js'

export interface RunningGateway {
  readonly gateway: Gateway
  /** The proxy listener's URL, e.g. http://127.0.0.1:8080. */
  readonly url: string
  close(): Promise<void>
}

/** Loads the config file, builds the gateway and listens. */
export async function startGateway(file: string, logger: Logger = createLogger()): Promise<RunningGateway> {
  const config = await loadCompiledConfig(file)
  const gateway = await buildGateway({ config, logger })
  const address = await gateway.app.listen({ host: config.server.host, port: config.server.port })
  logger.info({ address, routes: config.router.routes.length, config: file }, 'gateway listening')
  return { gateway, url: address, close: () => gateway.close() }
}

/** Runs until SIGTERM or SIGINT, then stops accepting, finishes what is in flight and exits. */
export async function runUntilSignal(file: string): Promise<number> {
  const logger = createLogger()
  const running = await startGateway(file, logger)
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'shutting down')
      running.close().then(
        () => resolve(0),
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
