import type { Gateway } from '../app.js'

export type ReadinessStatus = 'ready' | 'degraded' | 'not_ready'

export interface Readiness {
  readonly status: ReadinessStatus
  readonly checks: {
    readonly config: { readonly file: string; readonly routes: number }
    /** Per issuer: whether it can verify tokens now. */
    readonly issuers: Readonly<Record<string, 'ok' | 'no_keys'>>
    readonly redis: 'up' | 'down' | 'not_configured'
  }
}

/**
 * Ready: every issuer can verify tokens and Redis (when configured) answers.
 * Degraded: Redis is down; requests still work (in-process cache and direct
 * introspection), so the instance stays in service. Not ready: an issuer has
 * no keys, so its tokens would be refused with 503.
 */
export function readiness(gateway: Gateway): Readiness {
  const config = gateway.current
  const issuers: Record<string, 'ok' | 'no_keys'> = {}
  let missingKeys = false
  for (const issuer of config.issuers.values()) {
    // Static keys are always there; remote ones once fetched; introspection-only issuers need none.
    const ok = !issuer.jwks || issuer.jwks.hasKeys || issuer.mode === 'introspection'
    issuers[issuer.id] = ok ? 'ok' : 'no_keys'
    if (!ok) missingKeys = true
  }
  const store = gateway.sharedStore
  const redis = store === undefined ? 'not_configured' : store.up ? 'up' : 'down'
  const status: ReadinessStatus = missingKeys ? 'not_ready' : redis === 'down' ? 'degraded' : 'ready'
  return { status, checks: { config: { file: config.file, routes: config.router.routes.length }, issuers, redis } }
}
