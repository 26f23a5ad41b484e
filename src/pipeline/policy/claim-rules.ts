import { GatewayError } from '../../errors.js'
import { readClaim, type ClaimPath } from '../authn/claim-path.js'
import type { Principal } from '../authn/principal.js'

/** A value a rule compares a claim with: JSON scalars only, compared strictly (no coercion). */
export type ClaimScalar = string | number | boolean

/** Path parameters of the matched route, as the router gives them (canonical, percent-encoded segments). */
export type PathParams = Readonly<Record<string, string>>

/** One condition, compiled: true when the claims satisfy it. */
export type ClaimCheck = (claims: Readonly<Record<string, unknown>>, params: PathParams, foldCase: boolean) => boolean

/** A top-level rule of a route, with the id logs and metrics name it by. */
export interface ClaimRule {
  readonly id: string
  readonly check: ClaimCheck
}

const isScalar = (v: unknown): v is ClaimScalar => typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean'

/**
 * The operators of claim rules. Each builds a check once, when the
 * configuration is compiled; on the request path a check reads the claim at
 * its path (own properties of plain objects only) and compares. A claim that
 * is absent, or of another type than the rule expects, never satisfies a
 * positive operator: the rule fails closed.
 */
export const claimOperators = {
  /** The claim is exactly this scalar. */
  equals(path: ClaimPath, value: ClaimScalar): ClaimCheck {
    return (claims) => readClaim(claims, path) === value
  },
  /** The claim is one of these scalars. */
  oneOf(path: ClaimPath, values: readonly ClaimScalar[]): ClaimCheck {
    const set = new Set<unknown>(values)
    return (claims) => {
      const v = readClaim(claims, path)
      return isScalar(v) && set.has(v)
    }
  },
  /**
   * The claim is an array holding this scalar; a single string claim equal
   * to it counts too (some providers send a one-element group list as a
   * plain string).
   */
  contains(path: ClaimPath, value: ClaimScalar): ClaimCheck {
    return (claims) => {
      const v = readClaim(claims, path)
      return Array.isArray(v) ? v.includes(value) : typeof value === 'string' && v === value
    }
  },
  /** The claim is present (not null) or, with `present: false`, absent. */
  exists(path: ClaimPath, present: boolean): ClaimCheck {
    return (claims) => {
      const v = readClaim(claims, path)
      return (v !== undefined && v !== null) === present
    }
  },
  /**
   * The claim is a string equal to a segment of the request path, named in
   * the route's pattern. The segment is compared percent-decoded; a segment
   * that does not decode matches nothing. Where paths are matched without
   * regard to case, so is this comparison.
   */
  matchesPathParam(path: ClaimPath, param: string): ClaimCheck {
    return (claims, params, foldCase) => {
      const v = readClaim(claims, path)
      const segment = params[param]
      if (typeof v !== 'string' || segment === undefined) return false
      const decoded = decodeSegment(segment)
      if (decoded === undefined) return false
      return foldCase ? decoded === v.toLowerCase() : decoded === v
    }
  },
  /** The claim is a string the whole of which the pattern matches (a pattern vetted by safePattern). */
  matches(path: ClaimPath, pattern: RegExp): ClaimCheck {
    return (claims) => {
      const v = readClaim(claims, path)
      return typeof v === 'string' && v.length <= MAX_MATCHED_LENGTH && pattern.test(v)
    }
  },
  allOf(checks: readonly ClaimCheck[]): ClaimCheck {
    return (claims, params, fold) => {
      for (const c of checks) if (!c(claims, params, fold)) return false
      return true
    }
  },
  anyOf(checks: readonly ClaimCheck[]): ClaimCheck {
    return (claims, params, fold) => {
      for (const c of checks) if (c(claims, params, fold)) return true
      return false
    }
  },
  not(check: ClaimCheck): ClaimCheck {
    return (claims, params, fold) => !check(claims, params, fold)
  },
}

/** Strings longer than this never match a `matches` rule (the work per request stays bounded). */
export const MAX_MATCHED_LENGTH = 1024

function decodeSegment(segment: string): string | undefined {
  if (!segment.includes('%')) return segment
  try {
    return decodeURIComponent(segment)
  } catch {
    return undefined
  }
}

/**
 * Why a regular expression is refused for `matches`, or undefined when it
 * is accepted. Accepted are patterns whose matching time grows linearly with
 * the input: no back-references, no look-around, and no quantified group
 * that itself holds a quantifier or an alternation (the shapes of
 * catastrophic backtracking, `(a+)+`, `(a|a)*`). The pattern is anchored at
 * both ends by the gateway.
 */
export function refusePattern(source: string): string | undefined {
  if (source.length > 256) return 'is longer than 256 characters'
  if (/\\[1-9]|\\k</.test(source)) return 'uses a back-reference'
  if (/\(\?<?[=!]/.test(source)) return 'uses a look-around'
  try {
    new RegExp(source, 'u')
  } catch (err) {
    return `does not compile: ${(err as Error).message}`
  }
  // Find groups (outside classes and escapes) and what follows each.
  const stack: { quantified: boolean; alternation: boolean }[] = []
  let inClass = false
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!
    if (c === '\\') {
      i++
      continue
    }
    if (inClass) {
      if (c === ']') inClass = false
      continue
    }
    if (c === '[') inClass = true
    else if (c === '(') stack.push({ quantified: false, alternation: false })
    else if (c === '|' && stack.length > 0) stack.at(-1)!.alternation = true
    else if (c === ')') {
      const group = stack.pop()!
      const next = source[i + 1]
      const quantifiedGroup = next === '*' || next === '+' || next === '?' || next === '{'
      if (quantifiedGroup && (group.quantified || group.alternation)) return 'repeats a group that holds a repetition or an alternation (catastrophic backtracking)'
      if (stack.length > 0 && (group.quantified || quantifiedGroup)) stack.at(-1)!.quantified = true
    } else if ((c === '*' || c === '+' || c === '{') && stack.length > 0) stack.at(-1)!.quantified = true
  }
  return undefined
}

/** Compiles a vetted pattern, anchored: the whole claim must match. */
export function anchoredPattern(source: string): RegExp {
  return new RegExp(`^(?:${source})$`, 'u')
}

/**
 * Checks a route's claim rules against an authenticated principal, in
 * order. A failed rule is `claim_rule_failed` (403); its id goes to the log
 * and metrics, never to the client.
 */
export function checkClaimRules(principal: Principal, rules: readonly ClaimRule[], params: PathParams, foldCase: boolean): void {
  for (const rule of rules) {
    if (!rule.check(principal.claims, params, foldCase)) {
      throw new GatewayError('claim_rule_failed', 'the token does not satisfy the access rules of this route', { rule: rule.id })
    }
  }
}
