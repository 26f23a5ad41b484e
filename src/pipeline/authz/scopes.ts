import { GatewayError } from '../../errors.js'
import type { Principal } from '../authn/principal.js'

/** A scope requirement: every scope of `allOf`, and one of `anyOf` when it is not empty. */
export interface ScopeRule {
  readonly allOf: readonly string[]
  readonly anyOf: readonly string[]
}

/** What a route requires: a rule for every method, and extra rules per method. */
export interface RouteScopes {
  readonly all: ScopeRule | null
  readonly byMethod: ReadonlyMap<string, ScopeRule>
}

export function satisfies(granted: ReadonlySet<string>, rule: ScopeRule): boolean {
  for (const s of rule.allOf) if (!granted.has(s)) return false
  if (rule.anyOf.length === 0) return true
  for (const s of rule.anyOf) if (granted.has(s)) return true
  return false
}

/**
 * Checks the principal's scopes against the route's requirement for this
 * method. Runs on every request, whatever cache vouched for the token.
 */
export function authorize(principal: Principal, required: RouteScopes, method: string): void {
  const extra = required.byMethod.get(method)
  const failing: ScopeRule[] = []
  if (required.all && !satisfies(principal.scopes, required.all)) failing.push(required.all)
  if (extra && !satisfies(principal.scopes, extra)) failing.push(extra)
  if (failing.length === 0) return
  const scopes = new Set<string>()
  for (const rule of failing) {
    for (const s of rule.allOf) scopes.add(s)
    for (const s of rule.anyOf) scopes.add(s)
  }
  throw new GatewayError('scope_insufficient', 'the token lacks a scope this route requires', { requiredScopes: [...scopes] })
}
