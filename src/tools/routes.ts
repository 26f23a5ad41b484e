import type { CompiledConfig, CompiledRoute } from '../config/compile.js'
import type { ScopeRule } from '../pipeline/authz/scopes.js'
import type { Segment } from '../pipeline/match/pattern.js'
import type { RateLimitRule } from '../pipeline/ratelimit/limiter.js'

const SEGMENT_RANK: Record<Segment['kind'], number> = { static: 0, param: 1, wildcard: 3 }
const END_RANK = 2 // a pattern that ends here sits between :param and *

function hostRank(route: CompiledRoute): [number, number] {
  if (route.host === null) return [2, 0]
  if (route.host.startsWith('*.')) return [1, -route.host.length]
  return [0, 0]
}

/** Orders routes as the router tries them (see Router): host, then segment by segment, then methods. */
export function comparePrecedence(a: CompiledRoute, b: CompiledRoute): number {
  const [ha, la] = hostRank(a)
  const [hb, lb] = hostRank(b)
  if (ha !== hb) return ha - hb
  if (la !== lb) return la - lb
  const sa = a.pattern.segments
  const sb = b.pattern.segments
  for (let i = 0; i < Math.max(sa.length, sb.length); i++) {
    const x = sa[i]
    const y = sb[i]
    const rx = x ? SEGMENT_RANK[x.kind] : END_RANK
    const ry = y ? SEGMENT_RANK[y.kind] : END_RANK
    if (rx !== ry) return rx - ry
    if (x?.kind === 'static' && y?.kind === 'static' && x.value !== y.value) return x.value < y.value ? -1 : 1
  }
  if ((a.methods === null) !== (b.methods === null)) return a.methods === null ? 1 : -1
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

export function describeRule(rule: ScopeRule | null): string {
  if (rule === null) return 'any valid token'
  const parts: string[] = []
  if (rule.allOf.length) parts.push(`all of ${rule.allOf.join(' ')}`)
  if (rule.anyOf.length) parts.push(`any of ${rule.anyOf.join(' ')}`)
  return parts.join(' and ')
}

export function describeAuth(route: CompiledRoute): string {
  if (route.auth.kind === 'public') return 'public'
  const issuers = [...route.auth.tokens.byIss.values()].map((e) => `${e.issuer.id}(${e.mode})`).join(',')
  const extra = [...route.auth.scopes.byMethod].map(([m, r]) => `; ${m}: ${describeRule(r)}`).join('')
  const stepUp = route.auth.stepUp
  const policy = [
    ...(stepUp ? [`step-up ${[stepUp.acrValues.length ? `acr ${stepUp.acrValues.join('|')}` : '', stepUp.maxAgeSeconds !== undefined ? `max_age ${stepUp.maxAgeSeconds}s` : ''].filter(Boolean).join(' ')}`] : []),
    ...(route.auth.claimRules.length ? [`claims ${route.auth.claimRules.map((r) => r.id).join(',')}`] : []),
    ...bindingWords(route.auth.binding),
  ]
  return `${issuers}: ${describeRule(route.auth.scopes.all)}${extra}${policy.map((p) => `; ${p}`).join('')}`
}

/** The binding a route requires, when any issuer's is not the default ("binding dpop", "binding corp:mtls,other:optional"). */
function bindingWords(binding: ReadonlyMap<string, string>): string[] {
  const modes = new Set(binding.values())
  if (modes.size === 1) return modes.has('optional') ? [] : [`binding ${[...modes][0]}`]
  return [`binding ${[...binding].map(([id, m]) => `${id}:${m}`).join(',')}`]
}

/** A route's auth, and its limits when it has any (the routes table). */
function describeAccess(route: CompiledRoute): string {
  const limits = route.rateLimits
  if (limits === undefined) return describeAuth(route)
  return `${describeAuth(route)}; limits ${[...limits.byAddress, ...limits.byIdentity].map((r) => `${r.id} ${r.requests}/${r.perSeconds}s`).join(',')}`
}

/** A route's rate limits, in words ("per-client 5/10s burst 5 by client_id (redis: local)"). */
export function describeRateLimits(route: CompiledRoute, shared: boolean): string {
  const limits = route.rateLimits
  if (limits === undefined) return 'none'
  const one = (r: RateLimitRule) => {
    const by = r.by.map((p) => (p.kind === 'claim' ? `claim:${p.name}` : p.kind)).join('+')
    const where = shared ? `in Redis${r.batch > 1 ? `, batch ${r.batch}` : ''}, on_redis_error ${r.onRedisError}` : `per process: ${Math.max(1, Math.floor(r.burst / r.processes))} at once, ${r.requests}/${r.processes} per ${r.perSeconds}s`
    return `${r.id} ${r.requests}/${r.perSeconds}s burst ${r.burst} by ${by}${r.scope === 'default' ? ' (default, shared by routes)' : ''} (${where})`
  }
  return [
    ...limits.byAddress.map((r) => `${one(r)} before the token`),
    ...limits.byIdentity.map((r) => `${one(r)} after authorization`),
  ].join('; ')
}

function target(route: CompiledRoute): string {
  const t = route.upstream
  if (t.kind === 'http') return `${t.id} ${t.base}${route.stripPrefix ? ` (strip ${route.stripPrefix})` : ''}`
  if (t.kind === 'echo') return `${t.id} (echo)`
  return '(built in)'
}

/** The compiled route table, in precedence order, as data (`routes --json`). */
export function routeRows(config: CompiledConfig): Array<{ id: string; host: string | null; methods: readonly string[] | null; path: string; target: string; auth: string }> {
  return [...config.router.routes].sort(comparePrecedence).map((r) => ({ id: r.id, host: r.host, methods: r.methods, path: r.pattern.source, target: target(r), auth: describeAccess(r) }))
}

/** The compiled route table, in precedence order, as text columns. */
export function routeTable(config: CompiledConfig): string {
  const rows = routeRows(config).map((r) => [r.id, r.host ?? '*', r.methods?.join(',') ?? '*', r.path, r.target, r.auth])
  const header = ['ROUTE', 'HOST', 'METHODS', 'PATH', 'TARGET', 'AUTH']
  const all = [header, ...rows]
  const widths = header.map((_, i) => Math.max(...all.map((row) => row[i]!.length)))
  return all.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n') + '\n'
}

/** How long a token revoked at its issuer keeps working on each protected route (`validate` prints it). */
export function revocationBounds(config: CompiledConfig): Array<{ route: string; issuer: string; mode: string; bound: string }> {
  const builtIn = config.authorizationServer?.settings.issuer
  const rows: Array<{ route: string; issuer: string; mode: string; bound: string }> = []
  for (const route of [...config.router.routes].sort(comparePrecedence)) {
    if (route.auth.kind !== 'protected') continue
    for (const { issuer, mode } of route.auth.tokens.byIss.values()) {
      const ttl = issuer.introspection ? `${Math.round(issuer.introspection.settings.maxTtlMs / 1000)}s (introspection.max_ttl)` : undefined
      let bound: string
      if (issuer.issuer === builtIn) bound = 'at once (revoked at the built-in authorization server)'
      else if (mode === 'jwt') bound = 'until the token\'s exp'
      else if (mode === 'auto') bound = `JWTs until their exp; opaque tokens ${ttl ?? 'n/a'}`
      else bound = ttl ?? 'n/a'
      if (issuer.issuer !== builtIn && config.revocation.apiTokenDigest !== undefined) bound += '; at once when revoked through the gateway\'s revocation API'
      rows.push({ route: route.id, issuer: issuer.id, mode, bound })
    }
  }
  return rows
}
