import { pino, type Logger } from 'pino'

/**
 * The gateway's JSON logger on stdout. Writes are asynchronous (lines written
 * while a write is in flight go out together): one synchronous write per
 * request would cost the hot path a syscall. Call `flush` before exiting.
 * Request logging never includes headers, query strings or bodies
 * (test/ops/no-secrets-in-logs.test.ts).
 */
export function createLogger(level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { service: 'gateway' } }, pino.destination({ dest: 1, sync: false }))
}
