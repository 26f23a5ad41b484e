import { createHash } from 'node:crypto'
import { Ajv, type ErrorObject } from 'ajv'
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml'
import { ConfigError, type ConfigIssue } from './errors.js'
import { ConfigSchema, type Config } from './schema.js'

export type { FieldPath } from './errors.js'
import type { FieldPath } from './errors.js'

/** Turns a field path of the parsed file into a located issue. */
export interface Locator {
  readonly file: string
  /** The first 12 hex digits of the SHA-256 of the text. */
  readonly hash: string
  issue(path: FieldPath, message: string, options?: { atKey?: boolean }): ConfigIssue
}

export interface ParsedConfig {
  readonly config: Config
  readonly locator: Locator
  /** The environment the file was read under (for settings that honour standard variables, such as OTEL_*). */
  readonly env?: NodeJS.ProcessEnv
}

const ajv = new Ajv({ allErrors: true, strict: true, verbose: true, allowUnionTypes: true })
const validate = ajv.compile<Config>(ConfigSchema)

const INTERPOLATION = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

/**
 * Parses and validates a configuration text. `${NAME}` and `${NAME:-default}`
 * are replaced in scalar values (`$${` writes a literal `${`); an unset
 * variable without default is an error. Throws ConfigError listing every
 * problem with its line, column and field path.
 */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): ParsedConfig {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false, strict: true })
  const locator = makeLocator(doc, lineCounter, file, createHash('sha256').update(text).digest('hex').slice(0, 12))
  const at = (offset: number | undefined) => {
    const pos = offset === undefined ? { line: 0, col: 0 } : lineCounter.linePos(offset)
    return { line: pos.line, column: pos.col }
  }

  const syntax: ConfigIssue[] = [...doc.errors, ...doc.warnings].map((e) => ({
    file,
    ...at(e.pos[0]),
    path: '',
    message: e.message.split('\n')[0]!,
  }))
  if (syntax.length > 0) throw new ConfigError(syntax)

  const unset: ConfigIssue[] = []
  visit(doc, {
    Scalar(_key, node) {
      if (typeof node.value !== 'string' || !node.value.includes('${')) return
      const original = node.value
      const whole = /^\$\{[^}]+\}$/.test(original)
      const value = original.replace(INTERPOLATION, (match, name: string | undefined, fallback: string | undefined) => {
        if (match === '$${') return '${'
        const v = env[name!]
        if (v !== undefined && v !== '') return v
        if (fallback !== undefined) return fallback
        unset.push({ file, ...at(node.range?.[0]), path: '', message: `environment variable ${name} is not set` })
        return ''
      })
      // A plain `${PORT}` may stand for a number or a boolean.
      node.value = whole && node.type === 'PLAIN' ? plainScalar(value) : value
    },
  })
  if (unset.length > 0) throw new ConfigError(unset)

  const config: unknown = doc.toJS({ maxAliasCount: 50 })
  if (!validate(config)) {
    throw new SchemaError(describeSchemaErrors(validate.errors ?? [], locator, config), { config: config as Config, locator, env })
  }
  return { config, locator, env }
}

/**
 * A file that parses but does not fit the schema. It carries what was
 * parsed, so that the compiler can still look for the errors it finds
 * (unknown references, conflicts) and every error is reported in one pass.
 */
export class SchemaError extends ConfigError {
  constructor(
    issues: readonly ConfigIssue[],
    readonly parsed: ParsedConfig,
  ) {
    super(issues)
  }
}

function plainScalar(value: string): unknown {
  if (/^-?[0-9]+$/.test(value)) return Number(value)
  if (value === 'true') return true
  if (value === 'false') return false
  return value
}

function makeLocator(doc: Document, lineCounter: LineCounter, file: string, hash: string): Locator {
  return {
    file,
    hash,
    issue(path, message, options = {}) {
      let node: unknown = doc.contents
      let keyNode: Node | undefined
      let located = node as Node | undefined
      for (const segment of path) {
        if (isMap(node)) {
          const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(segment))
          if (!pair) break
          keyNode = pair.key as Node
          node = pair.value
        } else if (isSeq(node) && typeof segment === 'number') {
          node = node.items[segment]
          keyNode = undefined
          if (node === undefined) break
        } else {
          break
        }
        located = (node as Node | null) ?? keyNode
      }
      const target = options.atKey && keyNode ? keyNode : located
      const offset = target?.range?.[0]
      const pos = offset === undefined ? { line: 0, col: 0 } : lineCounter.linePos(offset)
      return { file, line: pos.line, column: pos.col, path: displayPath(path, doc), message }
    },
  }
}

/** `routes[2] (orders-read).auth.scopes`: the route's id helps ops find it. */
function displayPath(path: FieldPath, doc: Document): string {
  let out = ''
  path.forEach((segment, i) => {
    if (typeof segment === 'number') {
      out += `[${segment}]`
      if (i === 1 && (path[0] === 'routes' || path[0] === 'issuers')) {
        const id = doc.getIn([path[0], segment, 'id'])
        if (typeof id === 'string') out += ` (${id})`
      }
    } else {
      out += (out ? '.' : '') + segment
    }
  })
  return out
}

function pathOf(instancePath: string): Array<string | number> {
  if (instancePath === '') return []
  return instancePath
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^[0-9]+$/.test(s) ? Number(s) : s))
}

function describeSchemaErrors(errors: ErrorObject[], locator: Locator, config: unknown): ConfigIssue[] {
  const kept = dropUnionNoise(errors)
  const issues: ConfigIssue[] = []
  const seen = new Set<string>()
  for (const e of kept) {
    const path = pathOf(e.instancePath)
    const schema = (e.parentSchema ?? {}) as { description?: string; properties?: Record<string, unknown>; type?: string }
    let issue: ConfigIssue
    switch (e.keyword) {
      case 'required': {
        const missing = (e.params as { missingProperty: string }).missingProperty
        issue = locator.issue(path, `missing required field "${missing}"`)
        issue = { ...issue, path: issue.path ? `${issue.path}.${missing}` : missing }
        break
      }
      case 'additionalProperties': {
        const extra = (e.params as { additionalProperty: string }).additionalProperty
        const allowed = schema.properties ? Object.keys(schema.properties).join(', ') : undefined
        issue = locator.issue([...path, extra], `unknown field "${extra}"` + (allowed ? `; allowed here: ${allowed}` : ''), { atKey: true })
        break
      }
      case 'anyOf':
      case 'pattern':
      case 'const':
      case 'enum':
        issue = locator.issue(path, `must be ${schema.description ?? describeKeyword(e)}` + butGot(valueAt(config, path)))
        break
      case 'type':
        issue = locator.issue(path, `must be ${describeType(String((e.params as { type: string }).type))}` + butGot(valueAt(config, path)))
        break
      default:
        issue = locator.issue(path, e.message ?? 'is not valid')
    }
    const key = `${issue.line}:${issue.column}:${issue.message}`
    if (!seen.has(key)) {
      seen.add(key)
      issues.push(issue)
    }
  }
  return issues.sort((a, b) => a.line - b.line || a.column - b.column)
}

/**
 * Ajv reports every branch of a union. A branch whose type does not even fit
 * (a `type`, `const` or `enum` error at the union's own place) is not what the
 * author meant; of the others, the one whose errors go deepest (then the one
 * with fewest errors) is kept. When no branch fits, one "must be …" for the
 * union is clearer than any branch's errors.
 */
function dropUnionNoise(errors: ErrorObject[]): ErrorObject[] {
  const drop = new Set<ErrorObject>()
  for (const e of errors) {
    if (e.keyword !== 'anyOf') continue
    const prefix = e.schemaPath + '/'
    const inside = e.instancePath + '/'
    const branches = new Map<string, ErrorObject[]>()
    for (const x of errors) {
      if (x === e || !x.schemaPath.startsWith(prefix)) continue
      if (x.instancePath !== e.instancePath && !x.instancePath.startsWith(inside)) continue
      const branch = x.schemaPath.slice(prefix.length).split('/')[0]!
      branches.set(branch, [...(branches.get(branch) ?? []), x])
    }
    const fits = [...branches.values()].filter(
      (errs) => !errs.some((x) => x.instancePath === e.instancePath && ['type', 'const', 'enum', 'anyOf'].includes(x.keyword)),
    )
    const depth = (errs: ErrorObject[]) => Math.max(...errs.map((x) => x.instancePath.length))
    fits.sort((a, b) => depth(b) - depth(a) || a.length - b.length)
    const keep = fits[0]
    for (const errs of branches.values()) if (errs !== keep) for (const x of errs) drop.add(x)
    if (keep) drop.add(e)
  }
  return errors.filter((e) => !drop.has(e))
}

function describeKeyword(e: ErrorObject): string {
  if (e.keyword === 'pattern') return `a string matching ${(e.params as { pattern: string }).pattern}`
  if (e.keyword === 'const') return JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)
  if (e.keyword === 'enum') return 'one of ' + ((e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', '))
  return e.message ?? 'valid'
}

function describeType(type: string): string {
  if (type === 'object') return 'a mapping'
  if (type === 'array') return 'a list'
  if (type === 'integer') return 'a whole number'
  return `a ${type}`
}

function valueAt(config: unknown, path: FieldPath): unknown {
  let v = config
  for (const s of path) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[s as string] : undefined
  return v
}

function butGot(value: unknown): string {
  if (value === undefined) return ''
  if (value === null) return ', got an empty value'
  if (typeof value === 'object') return Array.isArray(value) ? ', got a list' : ', got a mapping'
  const shown = JSON.stringify(value)
  return `, got ${shown.length > 60 ? shown.slice(0, 57) + '…' : shown}`
}
