import { GatewayError } from '../../errors.js'
import { findParams } from '../extract/param-names.js'

/** Header names (folded: lower-case, punctuation as "-") frameworks read a method override from. */
const OVERRIDE_HEADERS = new Set(['x-http-method-override', 'x-http-method', 'x-method-override'])
const PARAM = ['_method']
const PARAM_HINTS = ['method']
const TOKEN = /^[A-Za-z][A-Za-z-]{0,31}$/

/** How a route treats method overrides (compiled). */
export type OverridePolicy = 'refuse' | 'allow' | 'ignore'

/**
 * The method a request asks the backend to act as, besides its own, from
 * X-HTTP-Method-Override and its variants (every spelling) or `_method` in
 * the query (every name a framework reads as `_method`); undefined when it
 * asks for none. Two override values that differ, or one that is not a
 * method name, are refused.
 */
export function requestedOverride(rawHeaders: readonly string[], query: string): string | undefined {
  let method: string | undefined
  const take = (value: string) => {
    const m = value.trim().toUpperCase()
    if (!TOKEN.test(m)) throw new GatewayError('method_override_refused', 'the method override is not a method name')
    if (method !== undefined && method !== m) throw new GatewayError('method_override_refused', 'the request asks for two different method overrides')
    method = m
  }
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!
    // Cheap filter: every override header name is 13 to 22 characters and starts with "x".
    if (name.length < 13 || name.length > 22 || (name.charCodeAt(0) | 0x20) !== 0x78) continue
    if (OVERRIDE_HEADERS.has(name.toLowerCase().replace(/[^a-z0-9]/g, '-'))) take(rawHeaders[i + 1]!)
  }
  for (const [, value] of findParams(query, PARAM, PARAM_HINTS)) take(value)
  return method
}

/** `_method` fields of a form body, by the same readings. */
export function formOverride(form: string): string | undefined {
  return requestedOverride([], form)
}

/**
 * Applies a route's policy to a requested override: refused (400
 * method_override_refused) unless the route allows overrides; when it does,
 * `authorizeAs` must accept the request as the override method too.
 */
export function checkOverride(override: string | undefined, policy: OverridePolicy, authorizeAs: (method: string) => void): void {
  if (override === undefined || policy === 'ignore') return
  if (policy === 'refuse') {
    throw new GatewayError('method_override_refused', 'method overrides are not accepted on this route: send the request with its real method')
  }
  authorizeAs(override)
}
