import { pino, type Logger } from 'pino'

/** What the one log line of a request says. Never the query string, headers or body: they may carry secrets. */
export interface AccessRecord {
  readonly reqId: string
  readonly route: string | undefined
  readonly method: string
  readonly path: string | undefined
  readonly status: number
  readonly clientId: string | undefined
  readonly decision: 'allow' | 'deny'
  readonly reason: string | undefined
  /** The claim rule that refused the request, when one did. */
  readonly rule?: string | undefined
  /** The rate limit that refused the request, when one did. */
  readonly limit?: string | undefined
  /** The trace of a recorded (sampled) request. */
  readonly traceId?: string | undefined
  readonly spanId?: string | undefined
  readonly ms: number
  readonly aborted: boolean
  /** The client's address, after trusted proxies. */
  readonly ip: string
  /** Body bytes received, and body bytes sent. */
  readonly bytesIn: number
  readonly bytesOut: number
}

const { chindingsSym, streamSym, timeSym } = pino.symbols
const INFO = 30

/**
 * The per-request log line, written as the very JSON line pino writes for
 * `logger.info({ reqId, route, … }, 'request')` with LOG_OPTIONS (text level, time, the logger's
 * bindings, the fields, msg) into the logger's own destination, but
 * serialised here: pino's generic serialiser walks and escapes every field
 * of every line, which measured a tenth of the instructions the gateway
 * spends on a request.
 */
export class AccessLog {
  private readonly stream: { write(line: string): unknown }
  private readonly time: () => string

  constructor(private readonly logger: Logger) {
    const owned = logger as unknown as Record<symbol, unknown>
    this.stream = owned[streamSym] as { write(line: string): unknown }
    this.time = owned[timeSym] as () => string
  }

  write(r: AccessRecord): void {
    if (this.logger.levelVal > INFO) return
    const bindings = (this.logger as unknown as Record<symbol, string>)[chindingsSym]
    this.stream.write(
      `{"level":"info"${this.time()}${bindings},"reqId":${str(r.reqId)},"route":${opt(r.route)},"method":${str(r.method)},"path":${opt(r.path)},"status":${r.status},"client_id":${opt(r.clientId)},"decision":"${r.decision}","reason":${opt(r.reason)}${r.rule === undefined ? '' : `,"rule":${str(r.rule)}`}${r.limit === undefined ? '' : `,"limit":${str(r.limit)}`},"ip":${str(r.ip)},"bytes_in":${r.bytesIn},"bytes_out":${r.bytesOut},"ms":${r.ms}${r.aborted ? ',"aborted":true' : ''}${r.traceId === undefined ? '' : `,"trace_id":"${r.traceId}","span_id":"${r.spanId}"`},"msg":"request"}\n`,
    )
  }
}

/** A JSON string; the scan spares JSON.stringify for the usual plain ASCII value. */
export function str(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return JSON.stringify(s)
  }
  return `"${s}"`
}

function opt(s: string | undefined): string {
  return s === undefined ? 'null' : str(s)
}
