import cluster from 'node:cluster'
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { ConfigError, formatIssue } from './config/errors.js'
// Everything else is imported by the command that needs it: `validate` or
// `--version` must not load the server, its HTTP client and Redis client.

const USAGE = `usage: gateway <command> [options]   (from a clone: npx gateway …, or node bin/gateway.js …)

commands:
  start --config FILE     run the gateway
  validate FILE [--json]  check a configuration file (exit 0 when valid, 1 when not); warnings are printed, exit 0
  routes FILE [--json]    print the compiled route table, in precedence order
  explain FILE --method M --path P [--host H] [--token T | --scopes "a b" [--claims JSON]]
               [--origin O [--request-method M]] [--binding bearer|dpop|mtls] [--json]
                          which route matches, what it requires (scopes, step-up, claim rules, CORS),
                          and the decision (exit 0 allow, 1 deny)
  hash-secret             read a client secret on stdin, print its hash for authorization_server.clients
  --version               print the version
`

function version(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version
  } catch {
    return 'unknown'
  }
}

const loadCompiledConfig = async (file: string) => (await import('./config/index.js')).loadCompiledConfig(file)
const json = (value: unknown) => JSON.stringify(value, null, 2) + '\n'

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
        const { runUntilSignal, ListenError } = await import('./server.js')
        try {
          return await runUntilSignal(values.config ?? process.env.GATEWAY_CONFIG ?? 'config/gateway.yaml')
        } catch (e) {
          if (!(e instanceof ListenError)) throw e
          // A worker's failure is said once, by its primary.
          if (!cluster.isWorker) err.write(`${e.message}\n`)
          return 1
        }
      }
      case '--version':
      case 'version':
        out.write(`${version()}\n`)
        return 0
      case 'validate': {
        const { positionals, values } = parseArgs({ args: rest, allowPositionals: true, options: { json: { type: 'boolean' } } })
        const file = positionals[0]
        if (!file || positionals.length > 1) {
          err.write(USAGE)
          return 2
        }
        let config
        try {
          config = await loadCompiledConfig(file)
        } catch (e) {
          if (!(e instanceof ConfigError) || !values.json) throw e
          out.write(json({ file, valid: false, errors: e.issues, warnings: [] }))
          return 1
        }
        const { revocationBounds } = await import('./tools/routes.js')
        const bounds = revocationBounds(config)
        if (values.json) {
          out.write(json({ file, valid: true, errors: [], warnings: config.warnings, routes: config.router.routes.length, issuers: config.issuers.size, revocation_bounds: bounds }))
          return 0
        }
        for (const w of config.warnings) err.write(`warning: ${formatIssue(w)}\n`)
        out.write(`${file}: valid (${config.router.routes.length} routes, ${config.issuers.size} issuers${config.warnings.length ? `, ${config.warnings.length} warnings` : ''})\n`)
        if (bounds.length > 0) {
          out.write('how long a revoked token keeps working:\n')
          const width = Math.max(...bounds.map((b) => `${b.route} (${b.issuer}, ${b.mode})`.length))
          for (const b of bounds) out.write(`  ${`${b.route} (${b.issuer}, ${b.mode})`.padEnd(width)}  ${b.bound}\n`)
        }
        return 0
      }
      case 'routes': {
        const { positionals, values } = parseArgs({ args: rest, allowPositionals: true, options: { json: { type: 'boolean' } } })
        if (positionals.length !== 1) {
          err.write(USAGE)
          return 2
        }
        const { routeRows, routeTable } = await import('./tools/routes.js')
        const config = await loadCompiledConfig(positionals[0]!)
        out.write(values.json ? json(routeRows(config)) : routeTable(config))
        return 0
      }
      case 'explain': {
        const { values, positionals } = parseArgs({
          args: rest,
          allowPositionals: true,
          options: {
            method: { type: 'string', default: 'GET' },
            path: { type: 'string' },
            host: { type: 'string' },
            token: { type: 'string' },
            scopes: { type: 'string' },
            claims: { type: 'string' },
            origin: { type: 'string' },
            'request-method': { type: 'string' },
            binding: { type: 'string' },
            json: { type: 'boolean' },
          },
        })
        if (positionals.length !== 1 || !values.path || (values.token !== undefined && (values.scopes !== undefined || values.claims !== undefined))) {
          err.write(USAGE)
          return 2
        }
        if (values.binding !== undefined && !['bearer', 'dpop', 'mtls'].includes(values.binding)) {
          err.write('--binding must be bearer, dpop or mtls\n')
          return 2
        }
        let claims: Record<string, unknown> | undefined
        if (values.claims !== undefined) {
          try {
            claims = JSON.parse(values.claims) as Record<string, unknown>
          } catch {
            claims = undefined
          }
          if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
            err.write('--claims must be a JSON object ({"client_id":"x","acr":"urn:example:mfa"})\n')
            return 2
          }
        }
        const config = await loadCompiledConfig(positionals[0]!)
        const { explain } = await import('./tools/explain.js')
        const result = await explain(config, {
          method: values.method!,
          path: values.path,
          host: values.host,
          token: values.token,
          scopes: values.scopes?.split(' ').filter(Boolean),
          claims,
          origin: values.origin,
          requestMethod: values['request-method'],
          binding: values.binding as 'bearer' | 'dpop' | 'mtls' | undefined,
        })
        out.write(values.json ? json(result) : result.lines.join('\n') + '\n')
        return result.decision === 'allow' ? 0 : 1
      }
      case 'hash-secret': {
        // One line; a trailing newline (echo, a here-string) is not part of the secret.
        const secret = (await readAll(input)).replace(/\r?\n$/, '')
        if (secret.length < 16) {
          err.write('the secret must have at least 16 characters\n')
          return 1
        }
        const { hashSecret } = await import('./authorization-server/secret-hash.js')
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
