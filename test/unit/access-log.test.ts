import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { AccessLog, type AccessRecord, str } from '../../src/access-log.js'
import { LOG_OPTIONS } from '../../src/logger.js'

/** A logger as createLogger makes it (base fields, a worker binding), with a fixed clock, writing into an array. */
function capture(level = 'info') {
  const lines: string[] = []
  const root = pino({ ...LOG_OPTIONS, level, timestamp: () => ',"time":"2026-12-02T00:00:00.000Z"' }, { write: (line: string) => void lines.push(line) })
  return { logger: root.child({ worker: 2 }), lines }
}

/** The line pino itself writes for the same record. */
function pinoLine(r: AccessRecord): string {
  const { logger, lines } = capture()
  logger.info(
    {
      reqId: r.reqId,
      route: r.route ?? null,
      method: r.method,
      path: r.path ?? null,
      status: r.status,
      client_id: r.clientId ?? null,
      decision: r.decision,
      reason: r.reason ?? null,
      ip: r.ip,
      bytes_in: r.bytesIn,
      bytes_out: r.bytesOut,
      ms: r.ms,
      ...(r.aborted ? { aborted: true } : {}),
    },
    'request',
  )
  return lines[0]!
}

const base: AccessRecord = {
  reqId: '6f1c2a9e-7a51-4b0e-9d3e-0c2f3b9d8a11',
  route: 'orders-read',
  method: 'GET',
  path: '/orders/42',
  status: 200,
  clientId: 'svc-billing',
  decision: 'allow',
  reason: undefined,
  ms: 1.27,
  aborted: false,
  ip: '10.0.0.7',
  bytesIn: 0,
  bytesOut: 812,
}

describe('AccessLog', () => {
  it.each<[string, Partial<AccessRecord>]>([
    ['an allowed request', {}],
    ['a refused one with nothing known', { route: undefined, path: undefined, clientId: undefined, decision: 'deny', reason: 'route_not_found', status: 404 }],
    ['an aborted one', { aborted: true, status: 502, ms: 30000 }],
    ['a client id that needs escaping', { clientId: 'a"b\\c\n\u0001' }],
    ['non-ASCII', { clientId: 'client-é-\u{1F600}' }],
    ['an extension method', { method: 'PURGE' }],
  ])('writes the line pino writes: %s', (_name, change) => {
    const record = { ...base, ...change }
    const { logger, lines } = capture()
    new AccessLog(logger).write(record)
    expect(lines).toEqual([pinoLine(record)])
    expect(JSON.parse(lines[0]!)).toMatchObject({ msg: 'request', worker: 2, service: 'gateway', level: 'info' })
  })

  it('keeps a lone surrogate as an escape, where pino would write U+FFFD', () => {
    const { logger, lines } = capture()
    new AccessLog(logger).write({ ...base, clientId: 'x\ud800' })
    expect(JSON.parse(lines[0]!).client_id).toBe('x\ud800')
  })

  it('writes nothing when the level is above info', () => {
    const { logger, lines } = capture('warn')
    new AccessLog(logger).write(base)
    expect(lines).toEqual([])
  })

  it('follows level changes', () => {
    const { logger, lines } = capture('warn')
    const log = new AccessLog(logger)
    logger.level = 'info'
    log.write(base)
    expect(lines).toHaveLength(1)
  })

  it('quotes plain strings as they are and escapes anything else as JSON does', () => {
    for (const s of ['', 'plain', 'with space', '"', '\\', '\u007f', '\u0000', 'é', '\u2028']) expect(JSON.parse(str(s))).toBe(s)
    expect(str('abc-123')).toBe('"abc-123"')
  })
})

describe('isoTime', () => {
  it('writes what Date#toISOString writes, at every millisecond', async () => {
    const { isoTime } = await import('../../src/logger.js')
    const { vi } = await import('vitest')
    vi.useFakeTimers()
    try {
      for (const t of [0, 999, 1000, 1_764_633_600_007, 1_764_633_600_099, 1_764_633_600_100, 1_764_633_600_999, 1_764_633_601_000]) {
        vi.setSystemTime(t)
        expect(isoTime()).toBe(`,"time":"${new Date(t).toISOString()}"`)
        expect(isoTime()).toBe(`,"time":"${new Date(t).toISOString()}"`)
      }
    } finally {
      vi.useRealTimers()
    }
  })
})
