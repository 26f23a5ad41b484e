import { compileConfig, type CompiledConfig, type CompileOptions } from './compile.js'
import { loadConfigFile } from './load.js'

/** Reads, validates and compiles a configuration file. Throws ConfigError. */
export async function loadCompiledConfig(file: string, options: CompileOptions & { env?: NodeJS.ProcessEnv } = {}): Promise<CompiledConfig> {
  const parsed = await loadConfigFile(file, options.env)
  return compileConfig(parsed, options)
}

export type { CompiledConfig, CompiledRoute } from './compile.js'
export { ConfigError, formatIssue } from './errors.js'
