import { parseArgs } from 'node:util'
import { ConfigError, loadCompiledConfig } from './config/index.js'
import { runUntilSignal } from './server.js'

const USAGE = `usage: gateway <command> [options]

commands:
  start --config FILE     run the gateway
  validate FILE           check a configuration file (exit 0 when valid, 1 when not)
`

/** Runs a CLI command; returns the process exit code. */
export async function main(argv: string[], out = process.stdout, err = process.stderr): Promise<number> {
  const [command, ...rest] = argv
  try {
    switch (command) {
      case 'start': {
        const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' } } })
        return await runUntilSignal(values.config ?? process.env.GATEWAY_CONFIG ?? 'config/gateway.yaml')
      }
      case 'validate': {
        const { positionals } = parseArgs({ args: rest, allowPositionals: true, options: {} })
        const file = positionals[0]
        if (!file || positionals.length > 1) {
          err.write(USAGE)
          return 2
        }
        const config = await loadCompiledConfig(file)
        out.write(`${file}: valid (${config.router.routes.length} routes, ${config.issuers.size} issuers)\n`)
        return 0
      }
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        out.write(USAGE)
        return command === undefined ? 2 : 0
      default:
        err.write(`unknown command "${command}"\n${USAGE}`)
        return 2
    }
  } catch (e) {
    if (e instanceof ConfigError) {
      err.write(e.message + '\n')
      return 1
    }
    if ((e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      err.write(`${(e as Error).message}\n${USAGE}`)
      return 2
    }
    throw e
  }
}
