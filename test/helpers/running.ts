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

/** `gateway start` as its own process (workers need one), its output collected. */
export interface SpawnedGateway {
  /** Everything it printed so far (stdout and stderr). */
  output(): string
  /** Resolves with its exit code. */
  readonly exited: Promise<number | null>
  signal(name: NodeJS.Signals): void
}

/** Starts `gateway start --config file` from source and waits until `listening` processes (workers) say they listen. */
export async function spawnGateway(file: string, options: { env?: NodeJS.ProcessEnv; listening?: number } = {}): Promise<SpawnedGateway> {
  const { spawn } = await import('node:child_process')
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/cli-entry.ts', 'start', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...options.env } })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()))
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve))
  const spawned = { output: () => out, exited, signal: (name: NodeJS.Signals) => void child.kill(name) }
  const end = Date.now() + 20_000
  while ((out.match(/gateway listening/g) ?? []).length < (options.listening ?? 1)) {
    if (Date.now() > end || child.exitCode !== null) {
      child.kill('SIGKILL')
      throw new Error(`the gateway did not start:\n${out}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return spawned
}
