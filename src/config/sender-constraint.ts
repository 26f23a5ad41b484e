import { Type, type Static } from '@sinclair/typebox'
import { parseDuration } from './duration.js'
import type { FieldPath } from './errors.js'
import { BINDING_MODES, type BindingMode } from '../pipeline/binding/binding.js'
import type { CertificateHeader } from '../oauth/client-certificate.js'
import { DPOP_ALGORITHMS, type ProofSettings } from '../oauth/dpop-proof.js'
import { NonceIssuer } from '../pipeline/binding/nonce.js'
import type { ReplayFallback, ReplaySettings } from '../pipeline/binding/replay.js'

/**
 * Sender-constrained tokens: the `dpop` section (how proofs are checked),
 * the `binding` of issuers and routes (which tokens they accept), and
 * `server.client_certificate_header` (the certificate a trusted
 * TLS-terminating proxy passes on). Schemas and compile steps side by side;
 * the checks are src/pipeline/binding/.
 */

const strict = { additionalProperties: false } as const
const Duration = (def: string, description: string) => Type.String({ pattern: '^[0-9]+(ms|s|m|h)$', default: def, description })

export const SENDER_DEFAULTS = {
  algorithms: ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA'] as const,
  maxAge: '60s',
  clockSkew: '5s',
  nonceLifetime: '5m',
  replayFallback: 'deny' as ReplayFallback,
  replayEntries: 1_000_000,
} as const

export const BindingSchema = Type.Union(
  BINDING_MODES.map((m) => Type.Literal(m)),
  {
    default: 'optional',
    description:
      'which tokens are accepted: "optional" (the default: unbound tokens as Bearer, bound ones only with their DPoP proof or certificate), "dpop" (DPoP-bound only), "mtls" (certificate-bound only), "any" (bound only, either kind). A token with cnf must always present its binding',
  },
)

export const DpopSchema = Type.Object(
  {
    algorithms: Type.Optional(
      Type.Array(Type.Union(DPOP_ALGORITHMS.map((a) => Type.Literal(a))), {
        minItems: 1,
        uniqueItems: true,
        default: [...SENDER_DEFAULTS.algorithms],
        description: 'JWS algorithms a DPoP proof may use (asymmetric only; advertised as dpop_signing_alg_values_supported)',
      }),
    ),
    max_age: Type.Optional(Duration(SENDER_DEFAULTS.maxAge, 'how old a proof may be (its iat); its jti is remembered this long plus twice the skew (1s to 10m)')),
    clock_skew: Type.Optional(Duration(SENDER_DEFAULTS.clockSkew, 'tolerated clock difference for a proof\'s iat (0s to 5m)')),
    nonce: Type.Optional(
      Type.Object(
        {
          secret: Type.Optional(
            Type.String({ minLength: 32, description: 'shared by every replica, so each accepts the nonces of the others; use ${ENV}. Without it a random one (one process only)' }),
          ),
          lifetime: Type.Optional(Duration(SENDER_DEFAULTS.nonceLifetime, 'how often the nonce changes; one is accepted for up to twice this (10s to 1h)')),
        },
        { ...strict, description: 'require server-provided nonces (RFC 9449 §8): a proof without a current one gets use_dpop_nonce and a DPoP-Nonce header' },
      ),
    ),
    replay: Type.Optional(
      Type.Object(
        {
          on_redis_error: Type.Optional(
            Type.Union([Type.Literal('deny'), Type.Literal('local')], {
              default: SENDER_DEFAULTS.replayFallback,
              description: 'when Redis is configured and does not answer: "deny" (503, the default) or "local" (each replica remembers proofs itself, counted in gateway_dpop_replay_local_total)',
            }),
          ),
          max_entries: Type.Optional(
            Type.Integer({ minimum: 1000, maximum: 100_000_000, default: SENDER_DEFAULTS.replayEntries, description: 'proofs remembered in process memory at most (without Redis); when all are still live, new proofs get 503' }),
          ),
        },
        { ...strict, description: 'a proof\'s jti is accepted once: across replicas through Redis (SET NX), else in process memory' },
      ),
    ),
  },
  { ...strict, description: 'DPoP (RFC 9449): how proofs are checked. Without this section DPoP-bound tokens are still checked, with these defaults' },
)

export const CertificateHeaderSchema = Type.Object(
  {
    name: Type.String({ pattern: '^[A-Za-z0-9-]+$', description: 'the header ("X-Forwarded-Client-Cert", "Client-Cert", "X-Amzn-Mtls-Clientcert"); it is stripped from every request' }),
    format: Type.Union([Type.Literal('xfcc'), Type.Literal('pem'), Type.Literal('rfc9440')], {
      description: 'xfcc (Envoy: one element with Cert or Hash), pem (URL-encoded PEM: nginx $ssl_client_escaped_cert, AWS ALB), rfc9440 (:base64 DER:)',
    }),
  },
  { ...strict, description: 'behind a TLS-terminating proxy: the client certificate it passes on, believed only from server.trust_proxy addresses' },
)

export type DpopConfig = Static<typeof DpopSchema>

export interface CompiledDpop {
  readonly proof: ProofSettings
  /** The `algs` of DPoP challenges and metadata. */
  readonly algs: readonly string[]
  readonly nonce: NonceIssuer | undefined
  readonly replay: ReplaySettings
}

type Report = (path: FieldPath, message: string) => void

function ranged(value: string, path: FieldPath, min: number, max: number, report: Report): number {
  const ms = parseDuration(value)
  if (ms < min || ms > max) report(path, `must be between ${min / 1000}s and ${max / 1000}s, got ${value}`)
  return ms
}

/**
 * The `dpop` section. A nonce without a secret is generated, which only one
 * process can use: refused with several workers, kept across reloads.
 */
export function compileDpop(c: DpopConfig | undefined, workers: number, previous: CompiledDpop | undefined, report: Report): CompiledDpop {
  const at = (...rest: FieldPath): FieldPath => ['dpop', ...rest]
  const maxAge = ranged(c?.max_age ?? SENDER_DEFAULTS.maxAge, at('max_age'), 1000, 600_000, report)
  const skew = ranged(c?.clock_skew ?? SENDER_DEFAULTS.clockSkew, at('clock_skew'), 0, 300_000, report)
  const algs = c?.algorithms ?? [...SENDER_DEFAULTS.algorithms]
  let nonce: NonceIssuer | undefined
  if (c?.nonce) {
    const lifetime = ranged(c.nonce.lifetime ?? SENDER_DEFAULTS.nonceLifetime, at('nonce', 'lifetime'), 10_000, 3_600_000, report)
    if (c.nonce.secret === undefined && workers > 1) report(at('nonce'), 'with several workers, nonces need a shared secret: each process would accept only its own')
    const kept = previous?.nonce
    nonce = c.nonce.secret === undefined && kept !== undefined && kept.slotSeconds * 1000 === lifetime ? kept : new NonceIssuer(c.nonce.secret, Math.max(1, Math.floor(lifetime / 1000)))
  }
  return Object.freeze({
    proof: { algorithms: new Set<string>(algs), maxAgeSeconds: maxAge / 1000, skewSeconds: skew / 1000 },
    algs,
    nonce,
    replay: { ttlMs: maxAge + 2 * skew, onRedisError: c?.replay?.on_redis_error ?? SENDER_DEFAULTS.replayFallback, maxEntries: c?.replay?.max_entries ?? SENDER_DEFAULTS.replayEntries },
  })
}

export function compileCertificateHeader(c: Static<typeof CertificateHeaderSchema> | undefined, trustsProxies: boolean, report: Report): CertificateHeader | undefined {
  if (c === undefined) return undefined
  if (!trustsProxies) report(['server', 'client_certificate_header'], 'a client certificate header is believed only from trusted proxies: set server.trust_proxy to their addresses')
  return { name: c.name.toLowerCase(), format: c.format }
}

/** The binding mode of a route for tokens of each issuer: the route's own, else the issuer's. */
export function bindingFor(routeMode: BindingMode | undefined, issuerMode: BindingMode | undefined): BindingMode {
  return routeMode ?? issuerMode ?? 'optional'
}
