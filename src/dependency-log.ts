import type { Logger } from 'pino'
import type { RejectedKey } from './pipeline/authn/remote-jwks.js'
import type { DependencyObserver } from './pipeline/authn/dependency-observer.js'

/** Why a call failed, in a line: the transport code (refused, DNS, TLS, timeout) or the message. */
export function describeCause(err: unknown): string {
  const seen = new Set<unknown>()
  let e = err as { name?: string; code?: string; message?: string; cause?: unknown } | undefined
  const parts: string[] = []
  while (e && typeof e === 'object' && !seen.has(e) && parts.length < 4) {
    seen.add(e)
    if (e.name === 'TimeoutError' || e.name === 'AbortError') parts.push('timeout')
    else if (e.code && !parts.includes(e.code)) parts.push(e.code)
    else if (e.message) parts.push(e.message)
    e = e.cause as typeof e
  }
  return parts.join(': ') || String(err)
}

/**
 * The dependency observer the running gateway uses: each event goes to the
 * metrics, and the log says what changed, with its cause, once per change of
 * state (an issuer's key fetches failing, then working again), never once
 * per request.
 */
export class LoggedObserver implements DependencyObserver {
  private readonly failing = new Map<string, string>()

  constructor(
    private readonly metrics: DependencyObserver,
    private readonly logger: Logger,
  ) {}

  jwksFetch(issuer: string, outcome: 'success' | 'failure', error?: unknown): void {
    this.metrics.jwksFetch(issuer, outcome, error)
    this.change(`jwks:${issuer}`, outcome === 'failure' ? describeCause(error) : undefined, (cause) =>
      cause === undefined
        ? this.logger.info({ issuer }, 'JWKS fetches work again')
        : this.logger.warn({ issuer, cause }, 'JWKS fetch failed; keys already loaded keep serving'),
    )
  }

  jwksKeysRejected(issuer: string, rejected: readonly RejectedKey[]): void {
    this.metrics.jwksKeysRejected(issuer, rejected)
    this.logger.warn({ issuer, keys: rejected }, 'JWKS keys left out: tokens signed with them are refused')
  }

  introspection(issuer: string, outcome: 'active' | 'inactive' | 'error', error?: unknown): void {
    this.metrics.introspection(issuer, outcome, error)
    this.change(`introspection:${issuer}`, outcome === 'error' ? describeCause(error) : undefined, (cause) =>
      cause === undefined
        ? this.logger.info({ issuer }, 'introspection works again')
        : this.logger.warn({ issuer, cause }, 'introspection failed; requests needing it are answered 503'),
    )
  }

  /** Logs when the state (undefined: working; a cause: failing with it) differs from the last one. */
  private change(key: string, cause: string | undefined, log: (cause: string | undefined) => void): void {
    const before = this.failing.get(key)
    if (before === cause) return
    if (cause === undefined) this.failing.delete(key)
    else this.failing.set(key, cause)
    if (cause !== undefined || before !== undefined) log(cause)
  }
}
