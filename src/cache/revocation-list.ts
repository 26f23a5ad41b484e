import { hash } from 'node:crypto'

/** Denials kept at most; past it the ones that expire first go (their tokens are nearest to expiring anyway). */
export const MAX_DENIALS = 1_000_000

/**
 * One revocation, as it travels between processes and replicas:
 * - `jti`: the token with this id from this issuer;
 * - `token`: the token whose SHA-256 (base64url) is `id` (opaque tokens);
 * - `sub` / `client`: every token of this issuer for this subject / client
 *   issued (`iat`) before `before`.
 * Each is kept until `until` (seconds since the epoch), when every token it
 * could deny has expired.
 */
export interface Denial {
  readonly kind: 'jti' | 'token' | 'sub' | 'client'
  readonly issuer: string
  readonly id: string
  readonly before?: number | undefined
  readonly until: number
}

export const DENIAL_KINDS = new Set(['jti', 'token', 'sub', 'client'])

/** A denial read from elsewhere (Redis, another process, the operator API), or undefined when malformed. */
export function parseDenial(value: unknown): Denial | undefined {
  if (value === null || typeof value !== 'object') return undefined
  const d = value as Record<string, unknown>
  if (typeof d.kind !== 'string' || !DENIAL_KINDS.has(d.kind) || typeof d.issuer !== 'string' || typeof d.id !== 'string' || d.id === '') return undefined
  if (typeof d.until !== 'number' || !Number.isFinite(d.until)) return undefined
  if ((d.kind === 'sub' || d.kind === 'client') && (typeof d.before !== 'number' || !Number.isFinite(d.before))) return undefined
  return { kind: d.kind as Denial['kind'], issuer: d.issuer, id: d.id, ...(typeof d.before === 'number' ? { before: d.before } : {}), until: d.until }
}

/** Where new denials made here are sent (the cluster primary, Redis). */
export type Relay = (denial: Denial) => void

/** The token hash denials are keyed by. */
export function tokenDigest(token: string): string {
  return hash('sha256', token, 'base64url')
}

/**
 * Revoked tokens, checked on every request (cached principals included), so
 * a revoked token stops working at once rather than at its `exp` or when a
 * cached introspection result expires. The check is a few Map lookups, and
 * none while nothing is revoked; a token's hash is computed only while some
 * token is denied by hash.
 */
export class RevocationList {
  /** kind → issuer → id → denial: looked up without building a key string per request. */
  private readonly byKind: Record<Denial['kind'], Map<string, Map<string, Denial>>> = { jti: new Map(), token: new Map(), sub: new Map(), client: new Map() }
  private count = 0
  private tokenDenials = 0
  private subjectDenials = 0
  private added = 0
  /**
   * Where denials made here are sent (to the cluster primary, which hands
   * them to the other workers; to Redis, which hands them to the other
   * replicas). The list outlives reloads, and so does this.
   */
  relay: Relay | undefined

  constructor(private readonly now: () => number = Date.now) {}

  get size(): number {
    return this.count
  }

  private find(kind: Denial['kind'], issuer: string, id: string): Denial | undefined {
    return this.byKind[kind].get(issuer)?.get(id)
  }

  /** Applies a denial; `relayed` ones came from elsewhere and are not sent on. Returns whether it was new. */
  apply(denial: Denial, relayed = false): boolean {
    const known = this.find(denial.kind, denial.issuer, denial.id)
    // A later "before" for the same subject or client widens it; anything else is a repeat.
    if (known !== undefined && (known.before ?? 0) >= (denial.before ?? 0) && known.until >= denial.until) return false
    if (known === undefined) {
      if (this.count >= MAX_DENIALS) this.prune(true)
      this.count++
      if (denial.kind === 'token') this.tokenDenials++
      if (denial.kind === 'sub' || denial.kind === 'client') this.subjectDenials++
    }
    const byIssuer = this.byKind[denial.kind]
    let ids = byIssuer.get(denial.issuer)
    if (ids === undefined) byIssuer.set(denial.issuer, (ids = new Map()))
    ids.set(denial.id, denial)
    if (++this.added % 1024 === 0) this.prune()
    if (!relayed) this.relay?.(denial)
    return true
  }

  /** Denies a token id until `expiresAt` (seconds since the epoch). */
  revoke(issuer: string, jti: string, expiresAt: number, relayed = false): boolean {
    return this.apply({ kind: 'jti', issuer, id: jti, until: expiresAt }, relayed)
  }

  /** Whether a token of this issuer, with these claims, is denied. */
  denies(iss: string, claims: Readonly<Record<string, unknown>>, subject: string | undefined, clientId: string | undefined, token?: () => string): boolean {
    if (this.count === 0) return false
    const jti = claims.jti
    if (typeof jti === 'string' && this.find('jti', iss, jti) !== undefined) return true
    if (this.tokenDenials > 0 && token !== undefined && this.find('token', '*', tokenDigest(token())) !== undefined) return true
    if (this.subjectDenials > 0) {
      // A token that does not say when it was issued is denied with the rest.
      const iat = typeof claims.iat === 'number' ? claims.iat : -Infinity
      const bySub = subject === undefined ? undefined : this.find('sub', iss, subject)
      if (bySub !== undefined && iat < bySub.before!) return true
      const byClient = clientId === undefined ? undefined : this.find('client', iss, clientId)
      if (byClient !== undefined && iat < byClient.before!) return true
    }
    return false
  }

  /** Denials in force, soonest to lapse first (the operator API lists them). */
  list(limit = 1000): Denial[] {
    const nowSeconds = this.now() / 1000
    const all: Denial[] = []
    for (const byIssuer of Object.values(this.byKind)) for (const ids of byIssuer.values()) for (const d of ids.values()) if (d.until > nowSeconds) all.push(d)
    return all.sort((a, b) => a.until - b.until).slice(0, limit)
  }

  /** Forgets denials whose tokens have all expired (or, when full, the tenth that lapse first). */
  prune(full = false): void {
    const nowSeconds = this.now() / 1000
    const all: Denial[] = []
    for (const byIssuer of Object.values(this.byKind)) {
      for (const ids of byIssuer.values()) {
        for (const d of ids.values()) {
          if (d.until + 300 < nowSeconds) this.remove(d)
          else if (full) all.push(d)
        }
      }
    }
    if (full && this.count >= MAX_DENIALS) for (const d of all.sort((a, b) => a.until - b.until).slice(0, Math.ceil(MAX_DENIALS / 10))) this.remove(d)
  }

  private remove(d: Denial): void {
    const ids = this.byKind[d.kind].get(d.issuer)
    if (ids?.delete(d.id) !== true) return
    if (ids.size === 0) this.byKind[d.kind].delete(d.issuer)
    this.count--
    if (d.kind === 'token') this.tokenDenials--
    if (d.kind === 'sub' || d.kind === 'client') this.subjectDenials--
  }
}

