/** Where a field is in the configuration: keys and indexes from the root. */
export type FieldPath = ReadonlyArray<string | number>

/** One problem in a configuration file, located for a human. */
export interface ConfigIssue {
  readonly file: string
  readonly line: number
  readonly column: number
  /** Field path as ops read it: `routes[2] (orders-read).auth.scopes`. */
  readonly path: string
  readonly message: string
}

export function formatIssue(issue: ConfigIssue): string {
  const where = issue.line > 0 ? `${issue.file}:${issue.line}:${issue.column}` : issue.file
  return issue.path ? `${where}: ${issue.path}: ${issue.message}` : `${where}: ${issue.message}`
}

/** A configuration that cannot be used. Nothing built from it is ever served. */
export class ConfigError extends Error {
  readonly code = 'config_invalid'
  readonly issues: readonly ConfigIssue[]

  constructor(issues: readonly ConfigIssue[]) {
    const n = issues.length
    super(`invalid configuration (${n} ${n === 1 ? 'error' : 'errors'}):\n` + issues.map((i) => '  ' + formatIssue(i)).join('\n'))
    this.name = 'ConfigError'
    this.issues = issues
  }
}
