import { parseArgs } from 'node:util'
import { ConfigError, loadCompiledConfig } from './config/index.js'
import { runUntilSignal } from './server.js'
import { hashSecret } from './authorization-server/secret-hash.js'
import { explain } from './tools/explain.js'
import { routeTable } from './tools/routes.js'

const USAGE = `usage: gateway <command> [options]

commands:
  start --config FILE     run the gateway
  validate FILE           check a configuration file (exit 0 when valid, 1 when not)
  routes FILE             print the compiled route table, in precedence order
  explain FILE --method M --path P [--host H] [--token T | --scopes "a b"]
                          which route matches, what it requires, and the decision (exit 0 allow, 1 deny)
  hash-secret             read a client secret on stdin, print its hash for authorization_server.clients
`

async function readAll(input: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of input) chunks.push(Buffer.from(chunk as Buffer))
  return Buffer.concat(chunks).toString('utf8')
}

/** Runs a CLI command; returns the process exit code. */
export async function main(argv: string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr, input: NodeJS.ReadableStream = process.stdin): Promise<number> {
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
      case 'routes': {
        const { positionals } = parseArgs({ args: rest, allowPositionals: true, options: {} })
        if (positionals.length !== 1) {
          err.write(USAGE)
          return 2
        }
        out.write(routeTable(await loadCompiledConfig(positionals[0]!)))
        return 0
      }
      case 'explain': {
        const { values, positionals } = parseArgs({
          args: rest,
          allowPositionals: true,
          options: { method: { type: 'string', default: 'GET' }, path: { type: 'string' }, host: { type: 'string' }, token: { type: 'string' }, scopes: { type: 'string' } },
        })
        if (positionals.length !== 1 || !values.path || (values.token !== undefined && values.scopes !== undefined)) {
          err.write(USAGE)
          return 2
        }
        const config = await loadCompiledConfig(positionals[0]!)
        const result = await explain(config, {
          method: values.method!,
          path: values.path,
          host: values.host,
          token: values.token,
          scopes: values.scopes?.split(' ').filter(Boolean),
        })
        out.write(result.lines.join('\n') + '\n')
        return result.decision === 'allow' ? 0 : 1
      }
      case 'hash-secret': {
        // One line; a trailing newline (echo, a here-string) is not part of the secret.
        const secret = (await readAll(input)).replace(/\r?\n$/, '')
        if (secret.length < 16) {
          err.write('the secret must have at least 16 characters\n')
          return 1
        }
        out.write((await hashSecret(secret)) + '\n')
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
    if (command === 'validate' || command === 'routes' || command === 'explain') {
      // Not a configuration error: a fault of the gateway's, said in a line, never a stack trace.
      err.write(`the configuration could not be compiled: ${(e as Error)?.message ?? String(e)} (please report this)\n`)
      return 1
    }
    if ((e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      err.write(`${(e as Error).message}\n${USAGE}`)
      return 2
    }
    throw e
  }
}
