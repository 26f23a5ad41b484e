import { pino, type Logger } from 'pino'

/**
 * The gateway's JSON logger. Request logging never includes headers, query
 * strings or bodies; the redaction is a second line of defence.
 */
export function createLogger(level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({
    level,
    base: { service: 'gateway' },
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', 'authorization', 'token', 'client_secret', '*.client_secret'],
      censor: '[redacted]',
    },
  })
}
