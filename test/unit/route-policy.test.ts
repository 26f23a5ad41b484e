import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { compileConfigText } from '../../src/config/index.js'
import { ConfigError, type ConfigIssue } from '../../src/config/errors.js'
import { anchoredPattern, claimOperators, type ClaimCheck } from '../../src/pipeline/policy/claim-rules.js'

const BASE = `
upstreams: { e: { echo: true } }
issuers: [{ id: i, issuer: https://i.example, jwks_uri: https://i.example/j, audiences: [a] }]
`
const route = (auth: string, extra = '', path = '/t/:tenant/*') => `${BASE}routes:\n  - id: r\n    match: { path: "${path}", methods: [GET, POST] }\n    upstream: e\n    auth: { issuers: [i], scopes: none, ${auth} }\n${extra}`

async function issues(yaml: string): Promise<ConfigIssue[]> {
  try {
    await compileConfigText(yaml, 'policy.yaml')
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    return [...(err as ConfigError).issues]
  }
  throw new Error('accepted')
}

describe('claim rules in the configuration', () => {
  it.each([
    ['an unknown operator', 'claims: [{ claim: a, greater_than: 3 }]', /greater_than/],
    ['two operators', 'claims: [{ claim: a, equals: 1, exists: true }]', /exactly one operator, not equals and exists/],
    ['no operator', 'claims: [{ claim: a }]', /needs one operator/],
    ['an operator without its claim', 'claims: [{ equals: x }]', /equals needs "claim"/],
    ['a claim beside a combinator', 'claims: [{ claim: a, not: { claim: b, exists: true } }]', /"claim" does not go with not/],
    ['a malformed claim path', 'claims: [{ claim: "a..b", exists: true }]', /not a claim path/],
    ['a path parameter the pattern lacks', 'claims: [{ claim: t, matches_path_param: team }]', /no parameter "team"; it has tenant/],
    ['a back-reference', 'claims: [{ claim: a, matches: "(a)\\\\1" }]', /back-reference/],
    ['nested repetition', 'claims: [{ claim: a, matches: "(a+)+$" }]', /catastrophic/],
    ['a repeated alternation', 'claims: [{ claim: a, matches: "(a|ab)*" }]', /catastrophic/],
    ['a look-ahead', 'claims: [{ claim: a, matches: "(?!x)y" }]', /look-around/],
    ['a pattern that does not compile', 'claims: [{ claim: a, matches: "(" }]', /does not compile/],
    ['duplicate rule ids', 'claims: [{ id: x, claim: a, exists: true }, { id: x, claim: b, exists: true }]', /duplicate rule id "x"/],
    ['an id on a nested rule', 'claims: [{ not: { id: y, claim: a, exists: true } }]', /only a top-level rule has an id/],
  ])('refuses %s, located', async (_name, auth, message) => {
    const found = await issues(route(auth))
    expect(found.map((i) => i.message).join('\n')).toMatch(message)
    for (const i of found) {
      expect(i.line).toBeGreaterThan(0)
      expect(i.path).toContain('routes[0] (r).auth.claims[')
    }
  })

  it('nesting is bounded', async () => {
    let rule = '{ claim: a, exists: true }'
    for (let i = 0; i < 9; i++) rule = `{ not: ${rule} }`
    expect((await issues(route(`claims: [${rule}]`)))[0]!.message).toMatch(/at most 8 deep/)
  })
})

describe('step-up and CORS in the configuration', () => {
  it('refuses "*" with credentials, and what is not an origin', async () => {
    const found = await issues(route('', `cors: { allowed_origins: ["*", "https://a.example/", "null", "https://b.example:99999x"], allow_credentials: true }`))
    expect(found.map((i) => i.message)).toEqual([expect.stringMatching(/"\*" cannot go with allow_credentials/), expect.stringMatching(/not an origin/), expect.stringMatching(/not an origin/), expect.stringMatching(/not an origin/)])
  })
  it('refuses a route policy naming methods the route does not serve, and a long max_age', async () => {
    const found = await issues(route('', '    cors: { allowed_origins: ["https://a.example"], allowed_methods: [GET, DELETE], max_age: 48h }'))
    expect(found.map((i) => i.message)).toEqual([expect.stringMatching(/DELETE is not among this route's methods/), expect.stringMatching(/between 100ms and 24h, got 48h/)])
  })
  it('warns on step-up where only the built-in server (client credentials) issues tokens, and on a public OPTIONS route beside CORS', async () => {
    const config = await compileConfigText(
      `authorization_server: { issuer: "http://127.0.0.1:8080", clients: [] }
cors: { allowed_origins: ["https://a.example"] }
upstreams: { e: { echo: true } }
issuers: [{ id: local, issuer: "http://127.0.0.1:8080", jwks_uri: "http://127.0.0.1:8080/.well-known/jwks.json", audiences: [a] }]
routes:
  - { id: admin, match: { path: /admin/* }, upstream: e, auth: { issuers: [local], scopes: none, step_up: { acr_values: [mfa] } } }
  - { id: preflights, match: { path: /admin/*, methods: [OPTIONS] }, upstream: e, auth: public }
`,
      'warn.yaml',
    )
    expect(config.warnings.map((w) => w.message)).toEqual([expect.stringMatching(/step-up needs tokens issued for users/), expect.stringMatching(/public route for OPTIONS alone/)])
  })
})

describe('claim operators', () => {
  const claimsArb = fc.dictionary(fc.constantFrom('a', 'b', 'c'), fc.oneof(fc.string({ maxLength: 3 }), fc.integer({ min: 0, max: 3 }), fc.boolean(), fc.constant(null), fc.array(fc.constantFrom('x', 'y', 1), { maxLength: 3 })))
  const leafArb = fc.oneof(
    fc.tuple(fc.constantFrom('a', 'b'), fc.oneof(fc.string({ maxLength: 3 }), fc.integer({ min: 0, max: 3 }))).map(([p, v]) => claimOperators.equals([p], v)),
    fc.tuple(fc.constantFrom('a', 'c'), fc.constantFrom('x', 'y', 1)).map(([p, v]) => claimOperators.contains([p], v)),
    fc.tuple(fc.constantFrom('a', 'b', 'c'), fc.boolean()).map(([p, v]) => claimOperators.exists([p], v)),
  )
  const run = (c: ClaimCheck, claims: Record<string, unknown>) => c(claims, {}, false)
  it('not, all_of and any_of are negation, conjunction and disjunction', () => {
    fc.assert(
      fc.property(leafArb, leafArb, claimsArb, (x, y, claims) => {
        expect(run(claimOperators.not(claimOperators.not(x)), claims)).toBe(run(x, claims))
        expect(run(claimOperators.allOf([x, y]), claims)).toBe(run(x, claims) && run(y, claims))
        expect(run(claimOperators.anyOf([x, y]), claims)).toBe(run(x, claims) || run(y, claims))
        expect(run(claimOperators.exists(['a'], true), claims)).toBe(!run(claimOperators.exists(['a'], false), claims))
      }),
    )
  })
  it('a pattern matches the whole claim, never a part of it', () => {
    const re = anchoredPattern('[a-z]+@corp\\.example|admin')
    expect(['ann@corp.example', 'admin'].map((s) => re.test(s))).toEqual([true, true])
    expect(['x ann@corp.example', 'ann@corp.example\n', 'ann@corp.example.evil', 'admins', 'xadmin'].some((s) => re.test(s))).toBe(false)
  })
})
