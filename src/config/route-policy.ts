import { Type, type Static } from '@sinclair/typebox'
import { parseClaimPath, type ClaimPath } from '../pipeline/authn/claim-path.js'
import { anchoredPattern, claimOperators, refusePattern, type ClaimCheck, type ClaimRule } from '../pipeline/policy/claim-rules.js'
import type { StepUp } from '../pipeline/policy/step-up.js'
import type { Pattern } from '../pipeline/match/pattern.js'
import { parseDuration } from './duration.js'
import type { FieldPath } from './errors.js'

/**
 * Route policy beyond scopes, under a protected route's `auth`: claim rules
 * (`claims`) and step-up authentication (`step_up`, RFC 9470). Their schema
 * and their compile step live here side by side; evaluation is in
 * src/pipeline/policy/.
 */

const strict = { additionalProperties: false } as const

const Scalar = Type.Union([Type.String(), Type.Number(), Type.Boolean()], { description: 'a string, number or boolean, compared strictly' })

/** The operators one rule may use; a rule holds exactly one of them. */
const OPERATORS = ['equals', 'one_of', 'contains', 'exists', 'matches', 'matches_path_param', 'all_of', 'any_of', 'not'] as const
const CLAIM_OPERATORS = new Set(['equals', 'one_of', 'contains', 'exists', 'matches', 'matches_path_param'])

/** Nested rules deeper than this are refused (a rule is read by people; the compile step recurses). */
export const MAX_RULE_DEPTH = 8

export const ClaimRuleSchema = Type.Recursive(
  (Rule) =>
    Type.Object(
      {
        id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$', description: 'names a top-level rule in logs and metrics (default: its position, "rule-1"…)' })),
        claim: Type.Optional(Type.String({ minLength: 1, description: 'the claim the operator reads: dotted names ("realm_access.roles"); a name holding dots in double quotes ("\\"https://corp/tenant\\"")' })),
        equals: Type.Optional(Scalar),
        one_of: Type.Optional(Type.Array(Scalar, { minItems: 1, description: 'the claim is one of these values' })),
        contains: Type.Optional(Type.Union([Type.String(), Type.Number(), Type.Boolean()], { description: 'the claim is an array holding this value (or a string equal to it)' })),
        exists: Type.Optional(Type.Boolean({ description: 'true: the claim is present; false: it is absent' })),
        matches: Type.Optional(Type.String({ minLength: 1, description: 'a regular expression the whole claim must match (linear-time patterns only: no back-references, look-around or nested repetition)' })),
        matches_path_param: Type.Optional(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$', description: 'the claim equals this parameter of the route pattern (":tenant" in "/tenants/:tenant/*")' })),
        all_of: Type.Optional(Type.Array(Rule, { minItems: 1, description: 'every rule holds' })),
        any_of: Type.Optional(Type.Array(Rule, { minItems: 1, description: 'at least one rule holds' })),
        not: Type.Optional(Rule),
      },
      { ...strict, description: 'a claim rule: "claim" with one operator (equals, one_of, contains, exists, matches, matches_path_param), or one combinator (all_of, any_of, not)' },
    ),
  { $id: 'ClaimRule' },
)

export const ClaimRulesSchema = Type.Array(ClaimRuleSchema, {
  minItems: 1,
  description: 'conditions on the token\'s claims, all of which must hold (after scopes); a failure is 403 claim_rule_failed, the rule\'s id logged, never sent',
})

export const StepUpSchema = Type.Object(
  {
    acr_values: Type.Optional(Type.Array(Type.String({ minLength: 1, pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$' }), { minItems: 1, uniqueItems: true, description: 'acceptable "acr" values; a token with another (or none) is refused with the RFC 9470 challenge' })),
    max_age: Type.Optional(Type.String({ pattern: '^[0-9]+(ms|s|m|h)$', description: 'longest time since the user authenticated ("auth_time"), a duration ("10m"); the challenge states it in seconds' })),
  },
  { ...strict, minProperties: 1, description: 'step-up authentication (RFC 9470): 401 insufficient_user_authentication when the token fails it' },
)

export type ClaimRuleConfig = Static<typeof ClaimRuleSchema>
export type StepUpConfig = Static<typeof StepUpSchema>

type Report = (path: FieldPath, message: string, atKey?: boolean) => void

/**
 * Compiles a route's claim rules once: every claim path parsed, every
 * operator checked (exactly one per rule, with what it needs), every named
 * path parameter present in the route's pattern, every pattern vetted.
 * Problems are reported located; the result is undefined when any was.
 */
export function compileClaimRules(rules: readonly ClaimRuleConfig[] | undefined, pattern: Pattern, at: FieldPath, report: Report): ClaimRule[] | undefined {
  if (rules === undefined) return []
  const params = new Set(pattern.segments.flatMap((s) => (s.kind === 'param' ? [s.name] : [])))
  let ok = true
  const fail = (path: FieldPath, message: string, atKey = false) => {
    ok = false
    report(path, message, atKey)
  }
  const ids = new Set<string>()
  const compiled = rules.map((rule, i) => {
    const id = rule.id ?? `rule-${i + 1}`
    if (ids.has(id)) fail([...at, i, 'id'], `duplicate rule id "${id}"`)
    ids.add(id)
    return { id, check: compileRule(rule, [...at, i], 1, params, fail) }
  })
  return ok ? compiled : undefined
}

const never: ClaimCheck = () => false

function compileRule(rule: ClaimRuleConfig, at: FieldPath, depth: number, params: ReadonlySet<string>, fail: Report): ClaimCheck {
  if (depth > MAX_RULE_DEPTH) {
    fail(at, `rules nest at most ${MAX_RULE_DEPTH} deep`)
    return never
  }
  if (depth > 1 && rule.id !== undefined) fail([...at, 'id'], 'only a top-level rule has an id', true)
  const present = OPERATORS.filter((op) => rule[op] !== undefined)
  if (present.length !== 1) {
    fail(at, present.length === 0 ? `a rule needs one operator: ${OPERATORS.join(', ')}` : `a rule holds exactly one operator, not ${present.join(' and ')}`)
    return never
  }
  const op = present[0]!
  if (!CLAIM_OPERATORS.has(op)) {
    if (rule.claim !== undefined) fail([...at, 'claim'], `"claim" does not go with ${op}: put it in the rules it combines`, true)
    const nested = (r: ClaimRuleConfig, path: FieldPath) => compileRule(r, path, depth + 1, params, fail)
    if (op === 'not') return claimOperators.not(nested(rule.not!, [...at, 'not']))
    const list = (rule[op] as ClaimRuleConfig[]).map((r, k) => nested(r, [...at, op, k]))
    return op === 'all_of' ? claimOperators.allOf(list) : claimOperators.anyOf(list)
  }
  if (rule.claim === undefined) {
    fail(at, `${op} needs "claim": the claim it reads`)
    return never
  }
  const path: ClaimPath | undefined = parseClaimPath(rule.claim)
  if (path === undefined) {
    fail([...at, 'claim'], `"${rule.claim}" is not a claim path (dotted names; a name with dots in double quotes)`)
    return never
  }
  switch (op) {
    case 'equals':
      return claimOperators.equals(path, rule.equals!)
    case 'one_of':
      return claimOperators.oneOf(path, rule.one_of!)
    case 'contains':
      return claimOperators.contains(path, rule.contains!)
    case 'exists':
      return claimOperators.exists(path, rule.exists!)
    case 'matches_path_param': {
      const name = rule.matches_path_param!
      if (!params.has(name)) {
        fail([...at, 'matches_path_param'], params.size === 0 ? `the route's path has no parameter "${name}" (it has none)` : `the route's path has no parameter "${name}"; it has ${[...params].join(', ')}`)
        return never
      }
      return claimOperators.matchesPathParam(path, name)
    }
    case 'matches': {
      const refused = refusePattern(rule.matches!)
      if (refused !== undefined) {
        fail([...at, 'matches'], `the pattern ${refused}`)
        return never
      }
      return claimOperators.matches(path, anchoredPattern(rule.matches!))
    }
  }
  return never
}

/** The top-level claim names a set of rules reads (cached principals keep them). */
export function claimNamesRead(rules: readonly ClaimRuleConfig[] | undefined): string[] {
  const out = new Set<string>()
  const walk = (rule: ClaimRuleConfig, depth: number) => {
    if (depth > MAX_RULE_DEPTH || rule === null || typeof rule !== 'object') return
    if (typeof rule.claim === 'string') {
      const path = parseClaimPath(rule.claim)
      if (path) out.add(path[0]!)
    }
    for (const r of [...(Array.isArray(rule.all_of) ? rule.all_of : []), ...(Array.isArray(rule.any_of) ? rule.any_of : []), ...(rule.not ? [rule.not] : [])]) walk(r, depth + 1)
  }
  for (const r of rules ?? []) walk(r, 1)
  return [...out]
}

/** The claims step-up reads. */
export const STEP_UP_CLAIMS = ['acr', 'auth_time'] as const

export function compileStepUp(config: StepUpConfig | undefined): StepUp | undefined {
  if (config === undefined) return undefined
  return Object.freeze({
    acrValues: Object.freeze([...(config.acr_values ?? [])]),
    maxAgeSeconds: config.max_age === undefined ? undefined : Math.floor(parseDuration(config.max_age) / 1000),
  })
}
