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
  /** The rules per method as configured (method_scopes). */
  readonly byMethod: ReadonlyMap<string, ScopeRule>
  /** What each method needs besides `all`, made total by routeScopes(). */
  readonly forMethod: ReadonlyMap<string, readonly ScopeRule[]>
  /** What any method not in `forMethod` needs besides `all`. */
  readonly otherMethods: readonly ScopeRule[]
}

/**
 * Makes a route's method rules total. A named method needs its rule; HEAD
 * follows GET unless named; GET and HEAD otherwise need `all` alone. On a
 * route that serves every method, any other method (TRACE, QUERY, PROPFIND…)
 * needs every named rule at once: a method nobody thought of is held to the
 * strictest rule, never to none.
 */
export function routeScopes(all: ScopeRule | null, byMethod: ReadonlyMap<string, ScopeRule>, servesEveryMethod: boolean): RouteScopes {
  const forMethod = new Map<string, readonly ScopeRule[]>()
  for (const [method, rule] of byMethod) forMethod.set(method, [rule])
  if (!forMethod.has('GET')) forMethod.set('GET', [])
  if (!forMethod.has('HEAD')) forMethod.set('HEAD', forMethod.get('GET')!)
  const otherMethods = servesEveryMethod ? [...byMethod.values()] : []
  return Object.freeze({ all, byMethod, forMethod, otherMethods })
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
  const extra = required.forMethod.get(method) ?? required.otherMethods
  const failing: ScopeRule[] = []
  if (required.all && !satisfies(principal.scopes, required.all)) failing.push(required.all)
  for (const rule of extra) if (!satisfies(principal.scopes, rule)) failing.push(rule)
  if (failing.length === 0) return
  const scopes = new Set<string>()
  for (const rule of failing) {
    for (const s of rule.allOf) scopes.add(s)
    for (const s of rule.anyOf) scopes.add(s)
  }
  throw new GatewayError('scope_insufficient', 'the token lacks a scope this route requires', { requiredScopes: [...scopes] })
}
