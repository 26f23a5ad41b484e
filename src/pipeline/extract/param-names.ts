/**
 * How common frameworks read a parameter name from a query string or a form
 * body, so that the gateway sees a parameter under every name a backend may
 * give it. Percent-decoding and case are applied first; then:
 * - PHP: leading spaces dropped, " " and "." read as "_", an unclosed "["
 *   read as "_", and `name[…]` as an array under `name`;
 * - qs, Rack, Rails: `name[]`, `name[0]`, `name[key]` under `name`; qs with
 *   allowDots: `name.key` under `name`;
 * - ASP.NET: names compared case-insensitively;
 * - a NUL ends the name (C-string handling).
 */
export function readingsOf(decodedName: string): string[] {
  let name = decodedName.toLowerCase()
  const nul = name.indexOf('\u0000')
  if (nul >= 0) name = name.slice(0, nul)
  const out = new Set<string>([name])
  const bracket = name.indexOf('[')
  const base = bracket >= 0 && name.indexOf(']', bracket) > bracket ? name.slice(0, bracket) : name
  out.add(base)
  const dot = base.indexOf('.')
  if (dot >= 0) out.add(base.slice(0, dot))
  // PHP's reading.
  let php = name.replace(/^[ \t\n\r\v\f]+/, '')
  const open = php.indexOf('[')
  if (open >= 0) {
    if (php.indexOf(']', open) > open) php = php.slice(0, open)
    else php = php.slice(0, open) + '_' + php.slice(open + 1)
  }
  out.add(php.replace(/[ .]/g, '_'))
  return [...out]
}

/** Whether a decoded parameter name reads as one of `targets` (lower-case) in some framework. */
export function readsAs(decodedName: string, targets: readonly string[]): string | undefined {
  for (const reading of readingsOf(decodedName)) if (targets.includes(reading)) return reading
  return undefined
}

/**
 * Cheap pre-check on a raw query or form text: false when no name in it can
 * read as any of the targets (none of their letters' runs appear and nothing
 * is percent-encoded), so that ordinary requests skip the parse.
 */
export function mayHold(raw: string, hints: readonly string[]): boolean {
  if (raw.includes('%')) return true
  const lower = raw.toLowerCase()
  for (const h of hints) if (lower.includes(h)) return true
  return false
}

/** The names in a query string or form text that read as one of `targets`, as [reading, value] pairs. */
export function findParams(raw: string, targets: readonly string[], hints: readonly string[]): Array<[string, string]> {
  const found: Array<[string, string]> = []
  if (raw.length <= 1 || !mayHold(raw, hints)) return found
  for (const [name, value] of new URLSearchParams(raw)) {
    const reading = readsAs(name, targets)
    if (reading !== undefined) found.push([reading, value])
  }
  return found
}
