import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import type { FieldPath } from './errors.js'

/**
 * A file a configuration names (a key, a certificate, a CA bundle), read
 * relative to the configuration file, its path added to `files` (the
 * reloader watches them: a file rotated on disk reloads the configuration).
 * Undefined, with a located error, when it cannot be read.
 */
export async function readConfigFile(given: string, baseDir: string, path: FieldPath, report: (path: FieldPath, message: string) => void, files: string[]): Promise<string | undefined> {
  const file = resolve(baseDir, given)
  files.push(file)
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    report(path, e.code === 'ENOENT' ? `file not found: ${file}` : `cannot read ${file}: ${e.message}`)
    return undefined
  }
}
