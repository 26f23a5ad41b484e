import { dependencyCall } from '../../http/dependency-call.js'

export interface AuthorizationServerMetadata {
  readonly issuer: string
  readonly jwks_uri?: string
  readonly introspection_endpoint?: string
}

/** While discovery has never succeeded, it is retried at most this often. */
export const DISCOVERY_RETRY_MS = 1000

/** RFC 8414 §3.1: the well-known segment goes between the host and the issuer's path. */
export function metadataUrls(issuer: string): string[] {
  const url = new URL(issuer)
  const path = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '')
  return [
    `${url.origin}/.well-known/oauth-authorization-server${path}`,
    // OpenID Connect Discovery appends to the issuer; most providers serve both.
    `${url.origin}${path}/.well-known/openid-configuration`,
  ]
}

/**
 * An issuer's metadata, fetched once on first use and kept. The `issuer` in
 * the document must be exactly the configured one (RFC 8414 §3.3), or the
 * document is refused: otherwise a metadata server could point the gateway
 * at another issuer's keys.
 */
export class Discovery {
  private metadata: AuthorizationServerMetadata | undefined
  private inFlight: Promise<AuthorizationServerMetadata> | undefined
  private lastFailureAt = Number.NEGATIVE_INFINITY
  private lastError: unknown

  constructor(
    readonly issuer: string,
    private readonly timeoutMs: number,
    private readonly checkUrl: (url: string) => void,
  ) {}

  async get(): Promise<AuthorizationServerMetadata> {
    if (this.metadata) return this.metadata
    if (this.inFlight) return this.inFlight
    if (Date.now() - this.lastFailureAt < DISCOVERY_RETRY_MS) throw this.lastError
    this.inFlight = this.fetch().finally(() => {
      this.inFlight = undefined
    })
    return this.inFlight
  }

  async endpoint(field: 'jwks_uri' | 'introspection_endpoint'): Promise<string> {
    const value = (await this.get())[field]
    if (typeof value !== 'string') throw new Error(`the issuer's metadata has no ${field}`)
    return value
  }

  private async fetch(): Promise<AuthorizationServerMetadata> {
    try {
      let lastStatus = 0
      for (const url of metadataUrls(this.issuer)) {
        const res = await dependencyCall(url, { method: 'GET', headers: { accept: 'application/json' }, timeoutMs: this.timeoutMs, maxBytes: 256 * 1024 })
        if (res.status !== 200) {
          lastStatus = res.status
          continue
        }
        const doc = JSON.parse(res.text) as Record<string, unknown>
        if (doc.issuer !== this.issuer) throw new Error(`metadata at ${url} names issuer ${JSON.stringify(doc.issuer)}, not ${this.issuer}`)
        for (const field of ['jwks_uri', 'introspection_endpoint'] as const) {
          if (doc[field] !== undefined) {
            if (typeof doc[field] !== 'string') throw new Error(`metadata field ${field} is not a string`)
            this.checkUrl(doc[field] as string)
          }
        }
        this.metadata = doc as unknown as AuthorizationServerMetadata
        return this.metadata
      }
      throw new Error(`no authorization server metadata found (last status ${lastStatus})`)
    } catch (err) {
      this.lastFailureAt = Date.now()
      this.lastError = err
      throw err
    }
  }
}
