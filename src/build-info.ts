import { readFileSync } from 'node:fs'

/** Which build runs: the package version, and the commit when the build recorded one (GATEWAY_COMMIT at build or run time). */
function read(): { version: string; commit: string } {
  let version = 'unknown'
  try {
    version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version
  } catch {
    // a bundled build without package.json
  }
  return { version, commit: process.env.GATEWAY_COMMIT ?? 'unknown' }
}

export const BUILD = read()
