import { readFile } from 'node:fs/promises'
import { compileConfig, type CompiledConfig, type CompileOptions } from './compile.js'
import { ConfigError, type ConfigIssue } from './errors.js'
import { parseConfig, SchemaError } from './load.js'

/** Reads, validates and compiles a configuration file. Throws ConfigError listing every problem. */
export async function loadCompiledConfig(file: string, options: CompileOptions & { env?: NodeJS.ProcessEnv } = {}): Promise<CompiledConfig> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : `cannot read the file (${(err as Error).message})`
    throw new ConfigError([{ file, line: 0, column: 0, path: '', message: reason }])
  }
  return compileConfigText(text, file, options)
}

/**
 * Validates and compiles a configuration text. Schema errors do not hide the
 * others: the compiler still runs on what was parsed, and every error it
 * finds too is reported, in one ConfigError sorted by line.
 */
export async function compileConfigText(text: string, file: string, options: CompileOptions & { env?: NodeJS.ProcessEnv } = {}): Promise<CompiledConfig> {
  try {
    return await compileConfig(parseConfig(text, file, options.env), options)
  } catch (err) {
    if (!(err instanceof SchemaError)) throw err
    let more: readonly ConfigIssue[] = []
    try {
      await compileConfig(err.parsed, options)
    } catch (compileErr) {
      // Only the compiler's own findings; anything else it trips on is what the schema already said.
      if (compileErr instanceof ConfigError) more = compileErr.issues
    }
    const seen = new Set(err.issues.map((i) => `${i.line}:${i.column}:${i.message}`))
    const merged = [...err.issues, ...more.filter((i) => !seen.has(`${i.line}:${i.column}:${i.message}`))]
    throw new ConfigError(merged.sort((a, b) => a.line - b.line || a.column - b.column))
  }
}

export type { CompiledConfig, CompiledRoute } from './compile.js'
export { ConfigError, formatIssue } from './errors.js'
