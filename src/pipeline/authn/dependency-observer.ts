import type { RejectedKey } from './remote-jwks.js'

/** What key and introspection clients report (compiled with the configuration). */
export interface DependencyObserver {
  jwksFetch(issuer: string, outcome: 'success' | 'failure', error?: unknown): void
  jwksKeysRejected(issuer: string, rejected: readonly RejectedKey[]): void
  introspection(issuer: string, outcome: 'active' | 'inactive' | 'error', error?: unknown): void
}
