import { randomUUID } from 'node:crypto'
import { createLocalJWKSet, jwtVerify, SignJWT, type JWTVerifyGetKey } from 'jose'
import { ExpiringLru } from '../cache/lru.js'
import { DUMMY_HASH, type ParsedHash } from './secret-hash.js'
import { SecretVerifier, VerifierBusy } from './secret-verifier.js'
import type { SigningKey } from './signing-keys.js'
import type { RevocationList } from '../cache/revocation-list.js'
import { GatewayError } from '../errors.js'
import type { ClientCertificate } from '../oauth/client-certificate.js'
import { normalizeHtu, verifyProof, type ProofSettings } from '../oauth/dpop-proof.js'

export interface RegisteredClient {
  readonly clientId: string
  readonly secret: ParsedHash
  readonly scopes: ReadonlySet<string>
  readonly defaultScopes: readonly string[]
  readonly audiences: readonly string[]
  readonly lifetimeSeconds: number
  readonly mayIntrospect: boolean
}

export interface AuthorizationServerSettings {
  /** The issuer URL, exactly as it appears in `iss`. */
  readonly issuer: string
  /** Signing keys: the first signs, all are published. */
  readonly keys: readonly SigningKey[]
  readonly clients: ReadonlyMap<string, RegisteredClient>
  readonly throttle: ThrottleLimits
  /** How DPoP proofs at the token endpoint are checked (the gateway's dpop section). */
  readonly dpop: ProofSettings
  /** Whether token requests can come with a client certificate (the HTTPS listener asks for one, or a trusted proxy passes it). */
  readonly certificateBound: boolean
}

/** A request as the built-in endpoints read it. */
export interface EndpointRequest {
  readonly rawHeaders: readonly string[]
  readonly contentType: string | undefined
  /** The form body (read by the gateway, bounded), when there is one. */
  readonly body: Buffer | undefined
  /** The client's address (after trusted proxies), for throttling. */
  readonly address?: string | undefined
  /** The request URI as the client sent it (scheme and host after trusted proxies), for DPoP's htu. */
  readonly uri?: string | undefined
  /** The client certificate of the request (TLS listener or trusted proxy), when there is one. */
  readonly certificate?: (() => ClientCertificate | undefined) | undefined
}

export interface EndpointResponse {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: unknown
}

type TokenError = 'invalid_request' | 'invalid_client' | 'invalid_grant' | 'unauthorized_client' | 'unsupported_grant_type' | 'invalid_scope' | 'invalid_dpop_proof'

const NO_STORE = { 'cache-control': 'no-store', pragma: 'no-cache' }

export interface ThrottleLimits {
  /** Failed attempts per (client id, address) in a window. */
  readonly failures: number
  /** Failed attempts per client id from all addresses together in a window. */
  readonly clientFailures: number
  readonly windowMs: number
}

interface Count {
  failures: number
  pending: number
  until: number
}

/**
 * Failed client authentications, counted per (client id, source address)
 * and per client id across addresses (the ceiling), shared across reloads.
 * An attempt is reserved before its secret is checked, so concurrent
 * guesses count at once; a client's own address is not locked out by
 * someone else's failures until the client-wide ceiling is reached.
 */
export class FailureThrottle {
  private readonly counts = new ExpiringLru<Count>(100_000)

  /** Seconds to wait when throttled; otherwise the attempt is reserved and `settle` must be called with its outcome. */
  reserve(clientId: string, address: string, limits: ThrottleLimits, now: number): { wait: number } | { settle: (outcome: 'ok' | 'failed' | 'unchecked') => void } {
    const keys = [`a\u0000${clientId}\u0000${address}`, `c\u0000${clientId}`] as const
    const caps = [limits.failures, limits.clientFailures]
    const counts = keys.map((k) => this.counts.get(k))
    for (let i = 0; i < 2; i++) {
      const c = counts[i]
      if (c && c.failures + c.pending >= caps[i]!) return { wait: Math.max(1, Math.ceil((c.until - now) / 1000)) }
    }
    const held = keys.map((k, i) => {
      const c = counts[i] ?? { failures: 0, pending: 0, until: now + limits.windowMs }
      c.pending++
      this.counts.set(k, c, c.until)
      return c
    })
    let settled = false
    return {
      settle: (outcome) => {
        if (settled) return
        settled = true
        for (const c of held) {
          c.pending--
          if (outcome === 'failed') c.failures++
        }
        if (outcome === 'ok') this.counts.delete(keys[0])
      },
    }
  }
}

function tokenError(status: number, error: TokenError, description: string, extra: Record<string, string> = {}): EndpointResponse {
  return { status, headers: { ...NO_STORE, ...extra }, body: { error, error_description: description } }
}

/** RFC 6749 §3.2: a parameter may appear once. */
function parseForm(req: EndpointRequest): URLSearchParams | EndpointResponse {
  const type = req.contentType?.split(';')[0]?.trim().toLowerCase()
  if (type !== 'application/x-www-form-urlencoded' || req.body === undefined) {
    return tokenError(400, 'invalid_request', 'the request must be application/x-www-form-urlencoded')
  }
  const form = new URLSearchParams(req.body.toString('utf8'))
  const seen = new Set<string>()
  for (const name of form.keys()) {
    if (seen.has(name)) return tokenError(400, 'invalid_request', `the parameter "${name}" appears more than once`)
    seen.add(name)
  }
  return form
}

function formDecode(s: string): string {
  return decodeURIComponent(s.replace(/\+/g, ' '))
}

/**
 * The built-in authorization server for the Client Credentials grant
 * (RFC 6749 §4.4): token endpoint, RFC 7662 introspection and RFC 7009
 * revocation of its own tokens, JWKS and RFC 8414 metadata. Its tokens are
 * RFC 9068 JWT access tokens; a revoked one is denied by `jti` until its
 * `exp`, by the gateway in front of every route that trusts this issuer.
 */
export class AuthorizationServer {
  readonly endpoints: { readonly token: string; readonly introspection: string; readonly revocation: string; readonly jwks: string; readonly metadata: string }
  /** The paths of its endpoints on the gateway listener. */
  readonly paths: { readonly token: string; readonly introspection: string; readonly revocation: string; readonly jwks: string; readonly metadata: string }
  private readonly verifyKey: JWTVerifyGetKey

  /**
   * @param throttle failure counts, kept across reloads
   * @param verifier the secret checking queue, kept across reloads
   * @param generatedKey whether the signing key was generated at start (kept across reloads)
   * @param revocations the token ids it revoked, kept across reloads (the gateway checks them)
   */
  constructor(
    readonly settings: AuthorizationServerSettings,
    readonly throttle: FailureThrottle,
    readonly verifier: SecretVerifier,
    readonly generatedKey: boolean,
    readonly revocations: RevocationList,
    private readonly now: () => number = Date.now,
  ) {
    const url = new URL(settings.issuer)
    const base = url.pathname.replace(/\/+$/, '')
    this.paths = {
      token: `${base}/oauth2/token`,
      introspection: `${base}/oauth2/introspect`,
      revocation: `${base}/oauth2/revoke`,
      jwks: `${base}/.well-known/jwks.json`,
      // RFC 8414 §3.1: the well-known segment goes before the issuer's path.
      metadata: `/.well-known/oauth-authorization-server${base}`,
    }
    this.endpoints = {
      token: url.origin + this.paths.token,
      introspection: url.origin + this.paths.introspection,
      revocation: url.origin + this.paths.revocation,
      jwks: url.origin + this.paths.jwks,
      metadata: url.origin + this.paths.metadata,
    }
    this.verifyKey = createLocalJWKSet({ keys: settings.keys.map((k) => k.publicJwk) })
  }

  metadata(): EndpointResponse {
    const scopes = new Set<string>()
    for (const c of this.settings.clients.values()) for (const s of c.scopes) scopes.add(s)
    const authMethods = ['client_secret_basic', 'client_secret_post']
    return {
      status: 200,
      headers: { 'cache-control': 'public, max-age=300' },
      body: {
        issuer: this.settings.issuer,
        token_endpoint: this.endpoints.token,
        jwks_uri: this.endpoints.jwks,
        introspection_endpoint: this.endpoints.introspection,
        revocation_endpoint: this.endpoints.revocation,
        grant_types_supported: ['client_credentials'],
        response_types_supported: [],
        token_endpoint_auth_methods_supported: authMethods,
        dpop_signing_alg_values_supported: [...this.settings.dpop.algorithms],
        tls_client_certificate_bound_access_tokens: this.settings.certificateBound,
        introspection_endpoint_auth_methods_supported: authMethods,
        revocation_endpoint_auth_methods_supported: authMethods,
        scopes_supported: [...scopes].sort(),
      },
    }
  }

  jwks(): EndpointResponse {
    return {
      status: 200,
      headers: { 'cache-control': 'public, max-age=300', 'content-type': 'application/jwk-set+json' },
      body: { keys: this.settings.keys.map((k) => k.publicJwk) },
    }
  }

  async token(req: EndpointRequest): Promise<EndpointResponse> {
    const form = parseForm(req)
    if (!(form instanceof URLSearchParams)) return form
    // A DPoP proof (RFC 9449 §5) is checked before the client's secret: a bad one costs no hash.
    const proof = this.tokenProof(req)
    if (proof !== undefined && 'status' in proof) return proof
    const auth = await this.authenticateClient(req, form)
    if ('status' in auth) return auth
    const client = auth
    const grantType = form.get('grant_type')
    if (grantType === null) return tokenError(400, 'invalid_request', 'grant_type is missing')
    if (grantType !== 'client_credentials') return tokenError(400, 'unsupported_grant_type', 'only the client_credentials grant is supported')

    const requested = form.get('scope')
    let scopes: string[]
    if (requested === null || requested.trim() === '') {
      scopes = [...client.defaultScopes]
    } else {
      scopes = [...new Set(requested.split(' ').filter((s) => s !== ''))]
      const refused = scopes.filter((s) => !client.scopes.has(s))
      if (refused.length > 0) return tokenError(400, 'invalid_scope', 'the client may not request some of these scopes')
    }

    // Sender-constrained (RFC 9449 §6, RFC 8705 §3): to the proof's key, and to the certificate of the connection.
    const cnf: Record<string, string> = {}
    if (proof !== undefined) {
      if (this.seenProofs.get(proof.jti) !== undefined) return tokenError(400, 'invalid_dpop_proof', 'the DPoP proof was already used')
      this.seenProofs.set(proof.jti, true, this.now() + (this.settings.dpop.maxAgeSeconds + 2 * this.settings.dpop.skewSeconds) * 1000)
      cnf.jkt = proof.jkt
    }
    let certificate: ClientCertificate | undefined
    try {
      certificate = req.certificate?.()
    } catch {
      return tokenError(400, 'invalid_request', 'the client certificate cannot be used')
    }
    if (certificate !== undefined) cnf['x5t#S256'] = certificate.x5t
    const bound = Object.keys(cnf).length > 0

    const key = this.settings.keys[0]!
    const iat = Math.floor(this.now() / 1000)
    const exp = iat + client.lifetimeSeconds
    const accessToken = await new SignJWT({ client_id: client.clientId, scope: scopes.join(' '), ...(bound ? { cnf } : {}) })
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'at+jwt' })
      .setIssuer(this.settings.issuer)
      .setSubject(client.clientId)
      .setAudience(client.audiences.length === 1 ? client.audiences[0]! : [...client.audiences])
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .setJti(randomUUID())
      .sign(key.privateKey)
    return {
      status: 200,
      headers: NO_STORE,
      body: { access_token: accessToken, token_type: proof !== undefined ? 'DPoP' : 'Bearer', expires_in: client.lifetimeSeconds, scope: scopes.join(' ') },
    }
  }

  async introspect(req: EndpointRequest): Promise<EndpointResponse> {
    const form = parseForm(req)
    if (!(form instanceof URLSearchParams)) return form
    const auth = await this.authenticateClient(req, form)
    if ('status' in auth) return auth
    if (!auth.mayIntrospect) return tokenError(403, 'unauthorized_client', 'this client may not introspect tokens')
    const token = form.get('token')
    if (token === null) return tokenError(400, 'invalid_request', 'token is missing')
    const payload = await this.ownToken(token)
    const text = (v: unknown) => (typeof v === 'string' ? v : undefined)
    if (payload === undefined || this.revocations.denies(this.settings.issuer, payload, text(payload.sub), text(payload.client_id), () => token)) return { status: 200, headers: NO_STORE, body: { active: false } }
    const dpop = typeof payload.cnf === 'object' && payload.cnf !== null && 'jkt' in payload.cnf
    return { status: 200, headers: NO_STORE, body: { ...payload, active: true, token_type: dpop ? 'DPoP' : 'Bearer' } }
  }

  /**
   * RFC 7009: a client revokes one of its own tokens. Answered 200 whether
   * or not the token was known or still valid (§2.2); a token issued to
   * another client is refused (§2.1). Refresh tokens are never issued, so
   * any token_type_hint is read as access_token.
   */
  async revoke(req: EndpointRequest): Promise<EndpointResponse> {
    const form = parseForm(req)
    if (!(form instanceof URLSearchParams)) return form
    const auth = await this.authenticateClient(req, form)
    if ('status' in auth) return auth
    const token = form.get('token')
    if (token === null) return tokenError(400, 'invalid_request', 'token is missing')
    const payload = await this.ownToken(token)
    if (payload !== undefined && typeof payload.jti === 'string' && typeof payload.exp === 'number') {
      if (payload.client_id !== auth.clientId) return tokenError(400, 'invalid_request', 'the token was not issued to this client')
      this.revocations.revoke(this.settings.issuer, payload.jti, payload.exp)
    }
    return { status: 200, headers: NO_STORE, body: {} }
  }

  /** DPoP proofs used at the token endpoint, by jti, until they could no longer be accepted. */
  private readonly seenProofs = new ExpiringLru<true>(100_000)

  /** The DPoP proof of a token request, checked; undefined without one; an error answer for a bad one. */
  private tokenProof(req: EndpointRequest): { jkt: string; jti: string } | EndpointResponse | undefined {
    let header: string | undefined
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      if (req.rawHeaders[i]!.toLowerCase() !== 'dpop') continue
      if (header !== undefined) return tokenError(400, 'invalid_dpop_proof', 'more than one DPoP header')
      header = req.rawHeaders[i + 1]!
    }
    if (header === undefined) return undefined
    const htu = req.uri === undefined ? undefined : normalizeHtu(req.uri)
    if (htu === undefined) return tokenError(400, 'invalid_dpop_proof', 'the token endpoint URI cannot be compared with the proof')
    try {
      return verifyProof(header, this.settings.dpop, { method: 'POST', htu, accessToken: undefined, nowSeconds: this.now() / 1000 })
    } catch (err) {
      if (err instanceof GatewayError) return tokenError(400, 'invalid_dpop_proof', err.message)
      throw err
    }
  }

  /** The claims of a token this server issued and that has not expired; undefined for anything else. */
  private async ownToken(token: string): Promise<Record<string, unknown> | undefined> {
    try {
      const { payload } = await jwtVerify(token, this.verifyKey, {
        issuer: this.settings.issuer,
        typ: 'at+jwt',
        algorithms: ['ES256', 'EdDSA', 'RS256'],
        requiredClaims: ['exp', 'jti'],
        currentDate: new Date(this.now()),
      })
      return payload
    } catch {
      return undefined
    }
  }

  /**
   * RFC 6749 §2.3.1: HTTP Basic or client_id/client_secret in the body, not
   * both. Unknown clients cost as much as wrong secrets, the comparison is
   * constant-time, and repeated failures for one client id are throttled.
   */
  private async authenticateClient(req: EndpointRequest, form: URLSearchParams): Promise<RegisteredClient | EndpointResponse> {
    const challenge = { 'www-authenticate': `Basic realm="${this.settings.issuer.replace(/"/g, '')}", charset="UTF-8"` }
    const invalidClient = (description: string) => tokenError(401, 'invalid_client', description, challenge)
    let header: string | undefined
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      if (req.rawHeaders[i]!.toLowerCase() === 'authorization') {
        if (header !== undefined) return tokenError(400, 'invalid_request', 'more than one Authorization header')
        header = req.rawHeaders[i + 1]!
      }
    }
    const inBody = form.has('client_id') || form.has('client_secret')
    let clientId: string
    let secret: string
    if (header !== undefined) {
      if (inBody) return tokenError(400, 'invalid_request', 'use one client authentication method, not two')
      const m = /^basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(header)
      if (!m) return invalidClient('the Authorization header is not HTTP Basic')
      const decoded = Buffer.from(m[1]!, 'base64').toString('utf8')
      const colon = decoded.indexOf(':')
      if (colon < 0) return invalidClient('malformed Basic credentials')
      try {
        clientId = formDecode(decoded.slice(0, colon))
        secret = formDecode(decoded.slice(colon + 1))
      } catch {
        return invalidClient('malformed Basic credentials')
      }
    } else if (inBody) {
      const id = form.get('client_id')
      const s = form.get('client_secret')
      if (id === null || s === null) return invalidClient('client_id and client_secret are both required')
      clientId = id
      secret = s
    } else {
      return invalidClient('client authentication is required')
    }

    const address = req.address ?? 'unknown'
    const attempt = this.throttle.reserve(clientId, address, this.settings.throttle, this.now())
    if ('wait' in attempt) {
      return { status: 429, headers: { ...NO_STORE, 'retry-after': String(attempt.wait) }, body: { error: 'invalid_client', error_description: 'too many failed attempts; retry later' } }
    }
    const client = this.settings.clients.get(clientId)
    let ok: boolean
    try {
      ok = await this.verifier.verify(secret, client?.secret ?? DUMMY_HASH, address)
    } catch (err) {
      attempt.settle('unchecked')
      if (!(err instanceof VerifierBusy)) throw err
      return { status: 503, headers: { ...NO_STORE, 'retry-after': '1' }, body: { error: 'temporarily_unavailable', error_description: 'too many client authentications in progress; retry later' } }
    }
    attempt.settle(ok && client !== undefined ? 'ok' : 'failed')
    if (!client || !ok) return invalidClient('client authentication failed')
    return client
  }
}
