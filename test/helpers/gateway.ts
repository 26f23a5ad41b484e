import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { LOG_OPTIONS } from '../../src/logger.js'
import { buildGateway, type Gateway } from '../../src/app.js'
import { compileConfig } from '../../src/config/compile.js'
import { parseConfig } from '../../src/config/load.js'
import { LoggedObserver } from '../../src/dependency-log.js'
import { Metrics } from '../../src/metrics/metrics.js'

export interface LogLine {
  msg: string
  reqId?: string
  route?: string | null
  path?: string | null
  status?: number
  decision?: string
  reason?: string | null
  [k: string]: unknown
}

export interface TestGateway {
  readonly gateway: Gateway
  readonly url: string
  readonly dir: string
  /** Every line the gateway logged, parsed. */
  readonly logs: LogLine[]
  /** The request log line for a response (by its x-request-id), once written. */
  requestLog(requestId: string | string[] | undefined): Promise<LogLine>
  close(): Promise<void>
}

/** Writes a YAML config to a temp dir, builds the gateway from it and listens on 127.0.0.1:0. */
export async function startGateway(yaml: string, files: Record<string, string> = {}, options: { port?: number; now?: () => number; env?: NodeJS.ProcessEnv } = {}): Promise<TestGateway> {
  const dir = await mkdtemp(join(tmpdir(), 'gw-test-'))
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content)
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, yaml)
  const logs: LogLine[] = []
  const logger = pino({ ...LOG_OPTIONS, level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) })
  const metrics = new Metrics({ processMetrics: false })
  const config = await compileConfig(parseConfig(yaml, file, options.env), { observer: new LoggedObserver(metrics, logger) })
  const gateway = await buildGateway({ config, logger, metrics, ...(options.now ? { now: options.now } : {}) })
  const url = await gateway.app.listen({ host: '127.0.0.1', port: options.port ?? 0 })
  return {
    gateway,
    url,
    dir,
    logs,
    async requestLog(requestId) {
      for (let i = 0; i < 200; i++) {
        const line = logs.find((l) => l.msg === 'request' && l.reqId === requestId)
        if (line) return line
        await new Promise((r) => setTimeout(r, 5))
      }
      throw new Error(`no request log line for ${String(requestId)}`)
    },
    close: () => gateway.close(),
  }
}

/** Waits until the gateway's Redis connection is up (a gateway serves before it is: DPoP replay checks then answer 503). */
export async function redisUp(g: TestGateway): Promise<void> {
  for (let i = 0; i < 300 && !g.gateway.sharedStore?.up; i++) await new Promise((r) => setTimeout(r, 10))
  if (!g.gateway.sharedStore?.up) throw new Error('Redis did not come up')
}
