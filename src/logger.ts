import { pino, type Logger } from 'pino'

/** Log lines are written in batches of at least this many bytes… */
export const LOG_BATCH_BYTES = 4096
/** …or at least this often, so that a quiet gateway's lines are not held back. */
export const LOG_FLUSH_MS = 250

/**
 * The gateway's JSON logger on stdout. Lines are batched: one write per
 * request would cost the hot path a write call each time. `flush` before
 * exiting. Request logging never includes headers, query strings or bodies
 * (test/ops/no-secrets-in-logs.test.ts).
 */
export function createLogger(level = process.env.LOG_LEVEL ?? 'info'): Logger {
  const destination = pino.destination({ dest: 1, sync: false, minLength: LOG_BATCH_BYTES })
  setInterval(() => destination.flush(), LOG_FLUSH_MS).unref()
  return pino({ level, base: { service: 'gateway' } }, destination)
}
