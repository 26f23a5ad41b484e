/**
 * Route path patterns: `/orders`, `/orders/:id`, `/orders/:id/items/*`.
 *
 * - a static segment matches itself exactly (case-sensitive, compared with
 *   the canonical path, so `%7E` and `~` are the same);
 * - `:name` matches exactly one non-empty segment;
 * - a final `*` matches zero or more remaining segments, so `/orders/*`
 *   covers `/orders` itself as well as everything below it.
 *
 * Empty segments are not significant: `/orders/` and `/orders` are the same
 * path to the matcher, as they are to most backends.
 */
export type Segment =
  | { readonly kind: 'static'; readonly value: string }
  | { readonly kind: 'param'; readonly name: string }
  | { readonly kind: 'wildcard' }

export interface Pattern {
  readonly source: string
  readonly segments: readonly Segment[]
  /** Identical for two patterns that match exactly the same paths. */
  readonly shapeKey: string
}

const STATIC_SEGMENT = /^(?:[A-Za-z0-9\-._~!$&'()*+,=:@]|%[0-9A-F]{2})+$/
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
const UNRESERVED_ENCODED = /%(?:4[1-9A-F]|5[0-9A]|6[1-9A-F]|7[0-9A]|3[0-9]|2D|2E|5F|7E)/g

export class PatternError extends Error {
  override name = 'PatternError'
}

/** Splits a canonical path into the segments the matcher compares. */
export function pathSegments(path: string): string[] {
  const parts = path.split('/')
  const out: string[] = []
  for (const part of parts) if (part !== '') out.push(part)
  return out
}

export function parsePattern(source: string): Pattern {
  if (!source.startsWith('/')) throw new PatternError('must start with "/"')
  const raw = pathSegments(source)
  const segments: Segment[] = []
  const names = new Set<string>()
  raw.forEach((part, index) => {
    if (part === '*') {
      if (index !== raw.length - 1) throw new PatternError('"*" is only allowed as the last segment')
      segments.push({ kind: 'wildcard' })
    } else if (part.startsWith(':')) {
      const name = part.slice(1)
      if (!PARAM_NAME.test(name)) throw new PatternError(`"${part}" is not a valid parameter (":" followed by a name)`)
      if (names.has(name)) throw new PatternError(`parameter ":${name}" appears twice`)
      names.add(name)
      segments.push({ kind: 'param', name })
    } else {
      if (part === '.' || part === '..') throw new PatternError('dot segments never reach the matcher; remove them')
      if (!STATIC_SEGMENT.test(part)) {
        throw new PatternError(`segment "${part}" has characters that are not allowed (use percent-encoding with upper-case hex; ";" and "\\" are never allowed)`)
      }
      if (part.includes('*')) throw new PatternError(`"*" must be a whole segment, at the end ("${part}")`)
      // Compare with the canonical form of request paths.
      const canonical = part.replace(UNRESERVED_ENCODED, (m) => String.fromCharCode(Number.parseInt(m.slice(1), 16)))
      if (canonical === '.' || canonical === '..') throw new PatternError('dot segments never reach the matcher; remove them')
      segments.push({ kind: 'static', value: canonical })
    }
  })
  const shapeKey = '/' + segments.map((s) => (s.kind === 'static' ? s.value : s.kind === 'param' ? ':' : '*')).join('/')
  return { source, segments, shapeKey }
}

/** The leading static segments of a pattern, as a path ("/api/v1"). */
export function staticPrefix(pattern: Pattern): string {
  const out: string[] = []
  for (const s of pattern.segments) {
    if (s.kind !== 'static') break
    out.push(s.value)
  }
  return '/' + out.join('/')
}

/** Whether some path matches both patterns (method-sensitivity of overlapping routes). */
export function patternsOverlap(a: Pattern, b: Pattern): boolean {
  const x = a.segments
  const y = b.segments
  for (let i = 0; ; i++) {
    const s = x[i]
    const t = y[i]
    if (s?.kind === 'wildcard' || t?.kind === 'wildcard') return true
    if (s === undefined || t === undefined) return s === t
    if (s.kind === 'static' && t.kind === 'static' && s.value !== t.value) return false
  }
}
