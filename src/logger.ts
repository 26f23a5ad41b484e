import { pino, type Logger } from 'pino'
import { BatchedDestination } from './log-destination.js'

/**
 * The gateway's JSON logger on stdout, batched (log-destination.ts).
 * Request logging never includes headers, query strings or bodies
 * (test/ops/no-secrets-in-logs.test.ts).
 */
export function createLogger(level = process.env.LOG_LEVEL ?? 'info'): Logger {
  const destination = new BatchedDestination(1)
  // Whatever way the process ends, the lines taken so far are written out.
  process.once('exit', () => destination.flushSync())
  const logger = pino({ level, base: { service: 'gateway' } }, destination)
  loggers.set(logger, destination)
  return logger
}

const loggers = new WeakMap<Logger, BatchedDestination>()

/** Writes out every line a logger made by createLogger has taken. */
export function flushLogger(logger: Logger): Promise<void> {
  const destination = loggers.get(logger)
  return new Promise((resolve) => (destination ? destination.flush(resolve) : resolve()))
}
