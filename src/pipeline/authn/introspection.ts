import { createHash, createHmac, hash } from 'node:crypto'
import { confirmationOf } from './confirmation.js'
import { GatewayError } from '../../errors.js'
import type { Codec } from '../../cache/tiered-cache.js'
import { BoundedLru, type ExpiringStore } from '../../cache/lru.js'
import type { TokenKeyed } from '../extract/bearer.js'
import { dependencyCall } from '../../http/dependency-call.js'
import { Interner, internString } from '../../cache/intern.js'
import { DEFAULT_SCOPE_CLAIMS, scopesFromClaims, sharedScopes, type Principal } from './principal.js'
import { ownClaim, type ClaimPath } from './claim-path.js'
import { callStarted, withCallHeaders, type CallObserver } from '../../observe/calls.js'

/**
 * What the gateway keeps of an introspection response: only the fields its
 * decisions and identity headers need. Never the token.
 */
export interface IntrospectionRecord {
  readonly active: boolean
  readonly iss?: string
  readonly sub?: string
  readonly client_id?: string
  readonly scope?: string
  readonly aud?: readonly string[]
  readonly exp?: number
  readonly nbf?: number
  readonly token_type?: string
  readonly token_use?: string
  /** RFC 7800 confirmation (RFC 9449 §6.2, RFC 8705 §3.2): what the token is bound to. */
  readonly cnf?: Readonly<Record<string, unknown>>
  /** Other claims configured as identity headers. */
  readonly claims?: Readonly<Record<string, unknown>>
  /**
   * The principal made from it, and the issuer object it was made for (a
   * reload makes new ones): built once per record on its first use. Kept on
   * the record rather than in a WeakMap beside it, so that a cached record
   * costs no ephemeron; never encoded.
   */
  principalFor?: IntrospectingIssuer | undefined
  principal?: Principal | undefined
  /** Until when the in-process tier holds it, in ms since the epoch (see IntrospectionMemory); never encoded. */
  cachedUntil?: number | undefined
}

export interface IntrospectionSettings {
  /** The endpoint, or how to find it (discovery). */
  readonly endpoint: string | (() => Promise<string>)
  readonly clientId: string
  readonly clientSecret: string
  readonly authMethod: 'client_secret_basic' | 'client_secret_post'
  readonly timeoutMs: number
  readonly maxTtlMs: number
  readonly negativeTtlMs: number
  readonly requireAudience: boolean
  /** Extra claims to keep for identity headers. */
  readonly keepClaims: readonly string[]
  /** The secret the seals of shared cache values are made under, with the token (cache.redis.integrity_key). */
  readonly integrityKey?: string | undefined
  /** Observes each call (metrics). */
  readonly onCall?: (outcome: 'active' | 'inactive' | 'error', error?: unknown) => void
}

/** The issuer fields that decisions on an introspection result need. */
export interface IntrospectingIssuer {
  readonly id: string
  readonly issuer: string
  readonly audiences: readonly string[]
  readonly clockSkewSeconds: number
  readonly introspection: IntrospectionClient
  readonly scopeClaims?: readonly ClaimPath[]
}

const MAX_RESPONSE_BYTES = 64 * 1024

/** RFC 6749 §2.3.1: both parts form-urlencoded before Basic encoding. */
function basicCredentials(id: string, secret: string): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+')
  return 'Basic ' + Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')
}

function optionalString(doc: Record<string, unknown>, name: string): string | undefined {
  const v = doc[name]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string') throw new GatewayError('claims_invalid', `the introspection response's "${name}" is not a string`)
  return v
}

function optionalNumber(doc: Record<string, unknown>, name: string): number | undefined {
  const v = doc[name]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new GatewayError('claims_invalid', `the introspection response's "${name}" is not a number`)
  return v
}

/**
 * An issuer's RFC 7662 endpoint, as called by the gateway: a POST of the
 * token with the gateway's own client credentials. An unreachable endpoint,
 * a non-200 answer or a malformed document is `dependency_unavailable`:
 * never an allow, never cached as inactive.
 */
export class IntrospectionClient implements TokenKeyed {
  /** Identifies the endpoint in cache keys: results are never shared across issuers or endpoints. */
  readonly scope: string

  constructor(
    readonly issuerId: string,
    readonly issuer: string,
    readonly settings: IntrospectionSettings,
  ) {
    // The claims kept are part of the scope: a reload that keeps more never reads records made without them.
    this.scope = `${issuerId}\u0000${issuer}\u0000${typeof settings.endpoint === 'string' ? settings.endpoint : 'discovered'}\u0000${[...settings.keepClaims].sort().join(',')}`
  }

  cacheKey(token: string): string {
    // A flat string (a prefix here would make each cached key a two-part string); the shared tier adds
    // its "introspection:" (see app.ts).
    return hash('sha256', `${this.scope}\u0000${token}`, 'base64url')
  }

  /**
   * The secret that seals this token's record in the shared tier (see
   * TieredCache): derived from the token, which the shared store never sees,
   * and, with an integrity key, from that key too. Without the key, whoever
   * can write to Redis can forge records only for tokens they already hold;
   * with it, for none.
   */
  sealSecret(token: string): Buffer {
    const mac = this.settings.integrityKey ? createHmac('sha256', this.settings.integrityKey) : createHash('sha256')
    return mac.update('seal\u0000').update(this.scope).update('\u0000').update(token).digest()
  }

  /** How long a record may be cached: inactive briefly, active never beyond its exp. */
  ttlMs(record: IntrospectionRecord, nowMs: number): number {
    if (!record.active) return this.settings.negativeTtlMs
    const max = this.settings.maxTtlMs
    if (record.exp === undefined) return max
    return Math.min(max, record.exp * 1000 - nowMs)
  }

  async introspect(token: string, calls?: CallObserver): Promise<IntrospectionRecord> {
    try {
      const record = await this.call(token, calls)
      this.settings.onCall?.(record.active ? 'active' : 'inactive')
      return record
    } catch (err) {
      this.settings.onCall?.('error', err)
      // A malformed claim is the token's problem (401); anything else means no answer (503).
      throw err instanceof GatewayError ? err : new GatewayError('dependency_unavailable', 'the token introspection endpoint is unavailable', { cause: err })
    }
  }

  private async call(token: string, calls: CallObserver | undefined): Promise<IntrospectionRecord> {
    const s = this.settings
    const endpoint = typeof s.endpoint === 'string' ? s.endpoint : await s.endpoint()
    const form = new URLSearchParams({ token, token_type_hint: 'access_token' })
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }
    if (s.authMethod === 'client_secret_basic') {
      headers.authorization = basicCredentials(s.clientId, s.clientSecret)
    } else {
      form.set('client_id', s.clientId)
      form.set('client_secret', s.clientSecret)
    }
    const call = callStarted('introspection', 'POST', endpoint, calls)
    let doc: unknown
    try {
      const res = await dependencyCall(endpoint, { method: 'POST', headers: withCallHeaders(headers, call), body: form.toString(), timeoutMs: s.timeoutMs, maxBytes: MAX_RESPONSE_BYTES })
      if (res.status !== 200) throw Object.assign(new Error(`introspection endpoint answered ${res.status}`), { status: res.status })
      try {
        doc = JSON.parse(res.text)
      } catch (err) {
        throw new Error('introspection response is not JSON', { cause: err })
      }
      call?.end(200)
    } catch (err) {
      call?.end((err as { status?: number }).status, err)
      throw err
    }
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc) || typeof (doc as { active?: unknown }).active !== 'boolean') {
      throw new Error('introspection response has no boolean "active"')
    }
    return this.record(doc as Record<string, unknown>)
  }

  /**
   * Built field by field (one shape for every record), with the values many
   * tokens share (issuer, audiences, scope, client id, type) interned: a
   * cached record holds little more than its subject.
   */
  private record(doc: Record<string, unknown>): IntrospectionRecord {
    if (doc.active !== true) return INACTIVE
    const aud = doc.aud
    let audiences: readonly string[] | undefined
    if (typeof aud === 'string') audiences = audienceList([aud])
    else if (Array.isArray(aud) && aud.every((a) => typeof a === 'string')) audiences = audienceList(aud as string[])
    else if (aud !== undefined && aud !== null) throw new GatewayError('claims_invalid', 'the introspection response\'s "aud" is malformed')
    const iss = optionalString(doc, 'iss')
    const clientId = optionalString(doc, 'client_id')
    const scope = optionalString(doc, 'scope')
    const tokenType = optionalString(doc, 'token_type')
    const tokenUse = optionalString(doc, 'token_use')
    let claims: Record<string, unknown> | undefined
    for (const name of this.settings.keepClaims) {
      const value = ownClaim(doc, name)
      if (value !== undefined) (claims ??= {})[name] = value
    }
    // One literal with every field (absent ones undefined): all records share one shape, fields in the object.
    const record: IntrospectionRecord = {
      active: true,
      iss: iss === undefined ? undefined : iss === this.issuer ? this.issuer : internString(iss),
      sub: optionalString(doc, 'sub'),
      client_id: clientId === undefined ? undefined : internString(clientId),
      scope: scope === undefined ? undefined : internString(scope),
      aud: audiences,
      exp: optionalNumber(doc, 'exp'),
      nbf: optionalNumber(doc, 'nbf'),
      token_type: tokenType === undefined ? undefined : internString(tokenType),
      token_use: tokenUse === undefined ? undefined : internString(tokenUse),
      cnf: confirmationRecord(doc.cnf),
      claims,
      principalFor: undefined,
      principal: undefined,
      cachedUntil: undefined,
    }
    return record
  }
}

const INACTIVE: IntrospectionRecord = Object.freeze({ active: false })

const cachedUntil = (record: IntrospectionRecord): number => record.cachedUntil ?? 0

/**
 * The in-process tier of introspection results. A record is its own cache
 * entry, holding its expiry (no wrapper object per entry); a record is set
 * once, by the load or the shared-tier read that made it. Inactive results
 * are cached as records of their own.
 */
export class IntrospectionMemory implements ExpiringStore<IntrospectionRecord> {
  private readonly records: BoundedLru<IntrospectionRecord>

  constructor(maxEntries: number, now: () => number = Date.now) {
    this.records = new BoundedLru(maxEntries, cachedUntil, now)
  }

  get size(): number {
    return this.records.size
  }

  get(key: string): IntrospectionRecord | undefined {
    return this.records.get(key)
  }

  set(key: string, record: IntrospectionRecord, expiresAt: number): void {
    const entry = Object.isFrozen(record) ? { ...record, cachedUntil: expiresAt } : record
    entry.cachedUntil = expiresAt
    this.records.set(key, entry)
  }

  delete(key: string): void {
    this.records.delete(key)
  }

  clear(): void {
    this.records.clear()
  }
}

/** Audience lists, kept once per distinct list (most tokens of an issuer name the same audiences). */
const audienceLists = new Interner<readonly string[]>(1024)

function audienceList(aud: readonly string[]): readonly string[] {
  return audienceLists.get(aud.join('\u0000'), () => Object.freeze([...aud]))
}

/** The members of `cnf` binding checks read (checked as a token's are), or undefined. */
function confirmationRecord(cnf: unknown): Record<string, string> | undefined {
  const c = confirmationOf(cnf)
  if (c === undefined) return undefined
  return { ...(c.jkt !== undefined ? { jkt: c.jkt } : {}), ...(c.x5t !== undefined ? { 'x5t#S256': c.x5t } : {}) }
}

/**
 * Decides on an introspection record, fresh or cached, exactly like on a JWT:
 * active, iss (when given) is this issuer, aud names one of its audiences
 * (required unless the issuer says otherwise), exp and nbf with the clock
 * skew, and an access-token type when one is given. Runs on every request.
 * With `remember`, the principal is kept on the record, built once: the
 * caller passes it for a record found in the cache, not for one just loaded,
 * so that a token used once leaves only its record in the cache (the
 * verified-token cache keeps JWTs the same way: what is derived for a
 * request is kept only once the token is seen again).
 */
export function principalFromIntrospection(issuer: IntrospectingIssuer, record: IntrospectionRecord, nowSeconds: number, remember = true): Principal {
  if (!record.active) throw new GatewayError('token_inactive', 'the token is not active')
  if (record.iss !== undefined && record.iss !== issuer.issuer) {
    throw new GatewayError('issuer_untrusted', 'the token was issued by an issuer this route does not trust')
  }
  if (record.aud !== undefined) {
    if (!record.aud.some((a) => issuer.audiences.includes(a))) throw new GatewayError('audience_invalid', 'the token is not meant for this audience')
  } else if (issuer.introspection.settings.requireAudience) {
    throw new GatewayError('audience_invalid', 'the token names no audience')
  }
  const skew = issuer.clockSkewSeconds
  if (record.exp !== undefined && record.exp + skew <= nowSeconds) throw new GatewayError('token_expired', 'the token has expired')
  if (record.nbf !== undefined && record.nbf - skew > nowSeconds) throw new GatewayError('token_not_yet_valid', 'the token is not valid yet')
  if (record.token_type !== undefined && !['bearer', 'dpop', 'access_token'].includes(record.token_type.toLowerCase())) {
    throw new GatewayError('type_invalid', 'the token is not an access token')
  }
  if (record.token_use !== undefined && record.token_use !== 'access_token') throw new GatewayError('type_invalid', 'the token is not an access token')
  if (record.principalFor === issuer) return record.principal!
  const principal = toPrincipal(issuer, record)
  if (remember) {
    record.principal = principal
    record.principalFor = issuer
  }
  return principal
}

function toPrincipal(issuer: IntrospectingIssuer, record: IntrospectionRecord): Principal {
  // Built in one order from an empty object: every principal's claims share one shape (a spread made
  // a hidden class per principal, a tenth of a cached entry's memory).
  const claims: Record<string, unknown> = {}
  claims.iss = record.iss ?? issuer.issuer
  if (record.sub !== undefined) claims.sub = record.sub
  if (record.client_id !== undefined) claims.client_id = record.client_id
  if (record.scope !== undefined) claims.scope = record.scope
  if (record.claims !== undefined) {
    for (const name in record.claims) if (!OWN_CLAIMS.has(name)) claims[name] = record.claims[name]
  }
  return {
    issuerId: issuer.id,
    issuer: issuer.issuer,
    subject: record.sub,
    clientId: record.client_id,
    scopes: scopesOf(issuer, record),
    expiresAt: record.exp,
    claims,
    confirmation: confirmationOf(record.cnf),
    identityHeadersFor: undefined,
    identityHeaders: undefined,
  }
}

/** The record's own fields, which kept claims of the same name never replace. */
const OWN_CLAIMS = new Set(['iss', 'sub', 'client_id', 'scope'])

/** The granted scopes: one shared set per scope string when only `scope` holds any (the usual case). */
function scopesOf(issuer: IntrospectingIssuer, record: IntrospectionRecord): ReadonlySet<string> {
  const paths = issuer.scopeClaims ?? DEFAULT_SCOPE_CLAIMS
  let readsScope = false
  for (const path of paths) {
    if (path.length === 1 && path[0] === 'scope') readsScope = true
    else if (record.claims !== undefined && ownClaim(record.claims, path[0]!) !== undefined) return scopesFromClaims({ ...record.claims, scope: record.scope }, paths)
  }
  return readsScope ? defaultScopes(record.scope) : NO_SCOPES
}

/** Scope sets read from `scope` alone, kept once per scope string (never changed once made). */
const scopeSets = new Interner<ReadonlySet<string>>(1024)

function defaultScopes(scope: string | undefined): ReadonlySet<string> {
  return scope === undefined ? NO_SCOPES : scopeSets.get(scope, (s) => sharedScopes(scopesFromClaims({ scope: s })))
}

const NO_SCOPES: ReadonlySet<string> = new Set()

const RECORD_FIELDS = new Set(['active', 'iss', 'sub', 'client_id', 'scope', 'aud', 'exp', 'nbf', 'token_type', 'token_use', 'cnf', 'claims'])

/**
 * The shared-tier format of records: versioned JSON, decoded strictly (the
 * whole text is sealed by the cache). Any value that is not exactly a record
 * of this version is a miss.
 */
export const introspectionCodec: Codec<IntrospectionRecord> = {
  encode: (record) => {
    // The record's fields only, never the principal made from it nor its expiry in this process.
    const { principal: _made, principalFor: _for, cachedUntil: _until, ...fields } = record
    return 'v3:' + JSON.stringify(fields)
  },
  decode(text) {
    if (!text.startsWith('v3:')) return undefined
    let doc: unknown
    try {
      doc = JSON.parse(text.slice(3))
    } catch {
      return undefined
    }
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return undefined
    const r = doc as Record<string, unknown>
    if (typeof r.active !== 'boolean') return undefined
    if (!Object.keys(r).every((k) => RECORD_FIELDS.has(k))) return undefined
    for (const k of ['iss', 'sub', 'client_id', 'scope', 'token_type', 'token_use'] as const) if (r[k] !== undefined && typeof r[k] !== 'string') return undefined
    for (const k of ['exp', 'nbf'] as const) if (r[k] !== undefined && typeof r[k] !== 'number') return undefined
    if (r.aud !== undefined && !(Array.isArray(r.aud) && r.aud.every((a) => typeof a === 'string'))) return undefined
    if (r.cnf !== undefined && (r.cnf === null || typeof r.cnf !== 'object' || Array.isArray(r.cnf))) return undefined
    if (r.claims !== undefined && (r.claims === null || typeof r.claims !== 'object' || Array.isArray(r.claims))) return undefined
    return r as unknown as IntrospectionRecord
  },
}
