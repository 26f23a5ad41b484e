import { jwtVerify } from 'jose'
import type { EndpointRequest, EndpointResponse } from '../../authorization-server/server.js'
import { ExpiringLru } from '../../cache/lru.js'
import type { RemoteJwks } from '../authn/remote-jwks.js'
import type { Denial, RevocationList } from '../../cache/revocation-list.js'

/** The CAEP events that end a subject's tokens. */
export const SESSION_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked'
export const CREDENTIAL_CHANGE = 'https://schemas.openid.net/secevent/caep/event-type/credential-change'
const HANDLED = [SESSION_REVOKED, CREDENTIAL_CHANGE]

/** A transmitter the gateway accepts Security Event Tokens from. */
export interface Transmitter {
  /** The SETs' `iss`. */
  readonly issuer: string
  readonly jwks: RemoteJwks
  /** The `aud` its SETs must name (this receiver). */
  readonly audience: string
  readonly algorithms: readonly string[]
}

export interface ReceiverSettings {
  readonly transmitters: readonly Transmitter[]
  /** The `iss` of every issuer the gateway trusts: subjects of others are not denied. */
  readonly trustedIssuers: ReadonlySet<string>
  /** How long a subject's denial lasts (the longest token life). */
  readonly maxTokenLifetimeSeconds: number
  readonly revocations: () => RevocationList
  /** SET ids already applied (kept across reloads), so a repeated delivery is not applied twice. */
  readonly seen: ExpiringLru<true>
  readonly now?: () => number
}

/** The largest SET accepted (RFC 8417 SETs are small). */
export const MAX_SET_BYTES = 64 * 1024

type SetError = 'invalid_request' | 'invalid_key' | 'invalid_issuer' | 'invalid_audience' | 'authentication_failed'
const fail = (err: SetError, description: string): EndpointResponse => ({ status: 400, headers: { 'cache-control': 'no-store' }, body: { err, description } })

/**
 * The push delivery endpoint (RFC 8935) for Shared Signals (OpenID SSF):
 * a transmitter POSTs one Security Event Token (RFC 8417,
 * `application/secevent+jwt`), verified with the transmitter's JWKS: `iss`,
 * `aud`, `typ` `secevent+jwt`. CAEP `session-revoked` and
 * `credential-change` deny every token of their subject issued before the
 * event (its `event_timestamp`, else the SET's `iat`), on every replica.
 * Subjects are `iss_sub` identifiers (RFC 9493), top-level `sub_id` or the
 * event's `subject`, of an issuer the gateway trusts. Answers 202, or 400
 * with an RFC 8935 error code.
 */
export async function receiveSet(request: EndpointRequest, settings: ReceiverSettings): Promise<EndpointResponse> {
  const type = request.contentType?.split(';')[0]?.trim().toLowerCase()
  if (type !== 'application/secevent+jwt') return fail('invalid_request', 'the body must be one SET, as application/secevent+jwt')
  const body = request.body
  if (!body || body.length === 0 || body.length > MAX_SET_BYTES) return fail('invalid_request', 'no SET, or one too large')
  const token = body.toString('latin1').trim()
  let claimed: { iss?: unknown } = {}
  try {
    claimed = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { iss?: unknown }
  } catch {
    return fail('invalid_request', 'the SET is not a JWT')
  }
  // Unverified: it only picks the transmitter whose keys must verify it.
  const transmitter = settings.transmitters.find((t) => t.issuer === claimed.iss)
  if (!transmitter) return fail('invalid_issuer', 'SETs from this issuer are not accepted')
  let payload: Record<string, unknown>
  try {
    ;({ payload } = await jwtVerify(token, transmitter.jwks.getKey, {
      issuer: transmitter.issuer,
      typ: 'secevent+jwt',
      algorithms: [...transmitter.algorithms],
      requiredClaims: ['iat', 'jti'],
      currentDate: new Date((settings.now ?? Date.now)()),
      clockTolerance: 60,
    }))
  } catch (err) {
    return fail('invalid_key', `the SET does not verify (${(err as { code?: string }).code ?? 'error'})`)
  }
  const aud = payload.aud
  if (!(aud === transmitter.audience || (Array.isArray(aud) && aud.includes(transmitter.audience)))) return fail('invalid_audience', 'the SET is not for this receiver')
  const events = payload.events
  if (events === null || typeof events !== 'object' || Array.isArray(events)) return fail('invalid_request', 'the SET has no events')
  const jti = `${transmitter.issuer}\u0000${String(payload.jti)}`
  if (settings.seen.get(jti)) return { status: 202, headers: {}, body: '' }
  const nowSeconds = (settings.now ?? Date.now)() / 1000
  for (const [eventType, event] of Object.entries(events as Record<string, unknown>)) {
    if (!HANDLED.includes(eventType) || event === null || typeof event !== 'object') continue
    const e = event as Record<string, unknown>
    const subject = subjectOf(payload.sub_id ?? e.subject)
    if (subject === undefined || !settings.trustedIssuers.has(subject.iss)) continue
    const at = typeof e.event_timestamp === 'number' && Number.isFinite(e.event_timestamp) ? Math.min(e.event_timestamp, nowSeconds) : Math.min(payload.iat as number, nowSeconds)
    const denial: Denial = { kind: 'sub', issuer: subject.iss, id: subject.sub, before: at, until: at + settings.maxTokenLifetimeSeconds }
    settings.revocations().apply(denial)
  }
  settings.seen.set(jti, true, ((payload.iat as number) + settings.maxTokenLifetimeSeconds) * 1000)
  return { status: 202, headers: {}, body: '' }
}

/** An RFC 9493 `iss_sub` subject identifier. */
function subjectOf(value: unknown): { iss: string; sub: string } | undefined {
  if (value === null || typeof value !== 'object') return undefined
  const v = value as Record<string, unknown>
  if (v.format === 'iss_sub' && typeof v.iss === 'string' && typeof v.sub === 'string' && v.sub !== '') return { iss: v.iss, sub: v.sub }
  return undefined
}
