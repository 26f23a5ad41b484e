import { createHash, randomBytes, sign as cryptoSign } from 'node:crypto'
import type { JWK } from 'jose'
import type { SigningKey } from '../../authorization-server/signing-keys.js'
import { readClaim, type ClaimPath } from '../authn/claim-path.js'
import type { Principal } from '../authn/principal.js'

/** What an assertion may be bound to: the request as it is sent upstream. */
export interface RequestBinding {
  readonly method: string
  /** The path sent upstream (base path and strip_prefix applied). */
  readonly path: string
  /** The query sent upstream, with its "?", or "". */
  readonly query: string
}

/** One upstream's assertion settings. */
export interface UpstreamAssertion {
  readonly signer: AssertionSigner
  /** The `aud`: the upstream's id unless configured. */
  readonly audience: string
  /** Lower-case header name; `authorization` sends `Bearer <assertion>`. */
  readonly header: string
  /** Sign per request, bound to method, path and query. */
  readonly bindRequest: boolean
}

/** Reused assertions are handed out while less than this share of their lifetime has passed. */
const REUSE_FRACTION = 0.5
/** Cached assertions per principal (one per upstream audience); beyond it, the oldest goes. */
const MAX_PER_PRINCIPAL = 16

const b64 = (data: string | Buffer) => Buffer.from(data).toString('base64url')

/**
 * Signs the gateway's identity assertions: short-lived JWTs (`typ`
 * `gateway-assertion+jwt`) saying who a request acts for, for one upstream
 * (`aud`), so that a service need not trust the network. Signed with the
 * first key (Ed25519 or ES256, node:crypto, on the event loop: about 20 µs for
 * Ed25519); every key is published (current and next) in `jwks()`.
 *
 * Without request binding, an assertion is reused for the same principal
 * object (the verified-token and introspection caches hand out the same one
 * for the same token) and upstream until half its lifetime has passed, so a
 * repeated token costs no signature. With binding, each request gets its own,
 * carrying `htm`, `htp` and `htq` (the base64url SHA-256 of the query).
 */
export class AssertionSigner {
  private readonly reuse = new WeakMap<Principal, Map<string, { value: string; until: number }>>()
  private readonly header: string
  private readonly sign: (data: Buffer) => Buffer

  constructor(
    readonly issuer: string,
    private readonly keys: readonly SigningKey[],
    private readonly lifetimeSeconds: number,
    private readonly claims: readonly ClaimPath[],
    private readonly now: () => number = Date.now,
  ) {
    const key = keys[0]!
    this.header = b64(JSON.stringify({ alg: key.alg, typ: 'gateway-assertion+jwt', kid: key.kid })) + '.'
    this.sign =
      key.alg === 'EdDSA'
        ? (data) => cryptoSign(null, data, key.privateKey)
        : key.alg === 'ES256'
          ? (data) => cryptoSign('sha256', data, { key: key.privateKey, dsaEncoding: 'ieee-p1363' })
          : (data) => cryptoSign('sha256', data, key.privateKey)
  }

  /** The published key set: the signing key and the others (next, or previous while their assertions live). */
  jwks(): { keys: JWK[] } {
    return { keys: this.keys.map((k) => k.publicJwk) }
  }

  get lifetime(): number {
    return this.lifetimeSeconds
  }

  /** The assertion for a principal, for one upstream, bound to the request when a binding is given. */
  assertion(principal: Principal, audience: string, binding?: RequestBinding): string {
    const nowMs = this.now()
    if (binding === undefined) {
      const known = this.reuse.get(principal)?.get(audience)
      if (known !== undefined && known.until > nowMs) return known.value
    }
    const iat = Math.floor(nowMs / 1000)
    const exp = Math.min(iat + this.lifetimeSeconds, principal.expiresAt ?? Infinity)
    const payload: Record<string, unknown> = {
      iss: this.issuer,
      aud: audience,
      iat,
      exp,
      jti: randomBytes(12).toString('base64url'),
    }
    if (principal.subject !== undefined) payload.sub = principal.subject
    if (principal.clientId !== undefined) payload.client_id = principal.clientId
    payload.scope = [...principal.scopes].join(' ')
    payload.token_iss = principal.issuer
    const made = new WeakSet<object>()
    for (const path of this.claims) {
      const value = readClaim(principal.claims, path)
      if (value !== undefined) place(payload, path, value, made)
    }
    if (binding !== undefined) {
      payload.htm = binding.method
      payload.htp = binding.path
      payload.htq = createHash('sha256').update(binding.query.startsWith('?') ? binding.query.slice(1) : binding.query).digest('base64url')
    }
    const input = this.header + b64(JSON.stringify(payload))
    const value = input + '.' + this.sign(Buffer.from(input)).toString('base64url')
    if (binding === undefined) {
      let byAudience = this.reuse.get(principal)
      if (byAudience === undefined) this.reuse.set(principal, (byAudience = new Map()))
      if (byAudience.size >= MAX_PER_PRINCIPAL) byAudience.delete(byAudience.keys().next().value!)
      byAudience.set(audience, { value, until: nowMs + (exp - iat) * 1000 * REUSE_FRACTION })
    }
    return value
  }
}

/**
 * Puts a value at a claim path of the payload, never over a claim already
 * there (the registered ones the gateway sets) and only as own properties
 * (a path through "__proto__" makes a property of that name, nothing else);
 * only objects made here are walked into, never a claim value of the token.
 */
function place(payload: Record<string, unknown>, path: ClaimPath, value: unknown, made: WeakSet<object>): void {
  const own = (target: Record<string, unknown>, name: string, v: unknown) => Object.defineProperty(target, name, { value: v, enumerable: true, writable: true, configurable: true })
  let target = payload
  for (let i = 0; i < path.length - 1; i++) {
    const name = path[i]!
    const next = Object.hasOwn(target, name) ? target[name] : undefined
    if (next === undefined) {
      const created: Record<string, unknown> = {}
      own(target, name, created)
      made.add(created)
      target = created
    } else if (typeof next === 'object' && next !== null && made.has(next)) target = next as Record<string, unknown>
    else return // a value of the token's (never modified), or a registered claim
  }
  const last = path[path.length - 1]!
  if (!Object.hasOwn(target, last)) own(target, last, value)
}
