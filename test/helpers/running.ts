import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { LOG_OPTIONS } from '../../src/logger.js'
import { startGateway, type RunningGateway } from '../../src/server.js'
import type { LogLine } from './gateway.js'

export interface Running extends Omit<RunningGateway, 'adminUrl'> {
  readonly adminUrl: string
  readonly file: string
  readonly dir: string
  readonly logs: LogLine[]
  readonly rawLog: string[]
}

/** The whole server as `gateway start` runs it (proxy, admin, reloader), on ports chosen by the OS. */
export async function startServer(yaml: string, env: NodeJS.ProcessEnv = {}): Promise<Running> {
  const dir = await mkdtemp(join(tmpdir(), 'gw-run-'))
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, yaml)
  const logs: LogLine[] = []
  const rawLog: string[] = []
  const logger = pino({ ...LOG_OPTIONS, level: 'trace' }, {
    write: (line: string) => {
      rawLog.push(line)
      logs.push(JSON.parse(line) as LogLine)
    },
  })
  const running = await startGateway(file, logger, env)
  return Object.assign(running, { file, dir, logs, rawLog, adminUrl: running.adminUrl! })
}

export const LISTEN_ANY = `server: { listen: "127.0.0.1:0", drain_timeout: 2s }
admin: { listen: "127.0.0.1:0" }
`
