import { GatewayError } from '../../errors.js'
import type { Principal } from '../authn/principal.js'

/** A route's step-up requirement (RFC 9470). */
export interface StepUp {
  /** Acceptable `acr` values; empty when any (or none) will do. */
  readonly acrValues: readonly string[]
  /** Longest time since `auth_time`, in seconds, when set. */
  readonly maxAgeSeconds: number | undefined
}

/**
 * Checks how and when the user authenticated: the token's `acr` must be one
 * of the route's `acr_values`, and its `auth_time` no older than `max_age`
 * (a token without `auth_time`, or with one in the future beyond the clock
 * skew of the issuer, fails). A failure is `authentication_insufficient`: 401 with the
 * RFC 9470 challenge naming what a new token must show.
 */
export function checkStepUp(principal: Principal, stepUp: StepUp, nowSeconds: number, clockSkewSeconds: number): void {
  const claims = principal.claims
  if (stepUp.acrValues.length > 0) {
    const acr = claims.acr
    if (typeof acr !== 'string' || !stepUp.acrValues.includes(acr)) refuse(stepUp, 'the token was not issued for a strong enough authentication of the user')
  }
  if (stepUp.maxAgeSeconds !== undefined) {
    const authTime = claims.auth_time
    if (typeof authTime !== 'number' || !Number.isFinite(authTime)) refuse(stepUp, 'the token does not say when the user authenticated')
    if (authTime > nowSeconds + clockSkewSeconds || nowSeconds - authTime > stepUp.maxAgeSeconds) {
      refuse(stepUp, 'the user authenticated too long ago')
    }
  }
}

function refuse(stepUp: StepUp, detail: string): never {
  throw new GatewayError('authentication_insufficient', detail, { stepUp: { acrValues: stepUp.acrValues, maxAge: stepUp.maxAgeSeconds } })
}
