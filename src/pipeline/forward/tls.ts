import { createHash, X509Certificate } from 'node:crypto'
import { checkServerIdentity, type PeerCertificate } from 'node:tls'

/** An upstream's TLS material and checks, as compiled (config/upstream-tls.ts). */
export interface UpstreamTls {
  /** PEM CA bundle; the system roots when absent. */
  readonly ca: string | undefined
  /** PEM client certificate and key (mutual TLS). */
  readonly cert: string | undefined
  readonly key: string | undefined
  /** SNI and the name checked; the URL's host when absent. */
  readonly serverName: string | undefined
  /** Base64 SHA-256 of acceptable leaf SubjectPublicKeyInfos. */
  readonly pins: ReadonlySet<string> | undefined
  /** Differs whenever any of the above does: a new connection pool is made for new material. */
  readonly fingerprint: string
}

/** Why a TLS connection to an upstream failed: the `reason` of `gateway_upstream_tls_failures_total`. */
export type TlsFailure = 'untrusted' | 'expired' | 'name_mismatch' | 'pin_mismatch' | 'handshake'

export const TLS_FAILURES: readonly TlsFailure[] = ['untrusted', 'expired', 'name_mismatch', 'pin_mismatch', 'handshake']

const PIN_MISMATCH = 'ERR_GATEWAY_PIN_MISMATCH'

/** The SHA-256 of a certificate's SubjectPublicKeyInfo, base64 (the HPKP / curl pin form). */
export function spkiPin(cert: PeerCertificate): string {
  return createHash('sha256').update(new X509Certificate(cert.raw).publicKey.export({ type: 'spki', format: 'der' })).digest('base64')
}

/** undici connect options for an upstream: certificates always verified, the name checked, then the pins. */
export function connectOptions(tls: UpstreamTls | undefined): Record<string, unknown> {
  if (tls === undefined) return { rejectUnauthorized: true }
  const pins = tls.pins
  return {
    rejectUnauthorized: true,
    ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
    ...(tls.cert !== undefined ? { cert: tls.cert, key: tls.key } : {}),
    ...(tls.serverName !== undefined ? { servername: tls.serverName } : {}),
    checkServerIdentity(host: string, cert: PeerCertificate): Error | undefined {
      const wrongName = checkServerIdentity(tls.serverName ?? host, cert)
      if (wrongName) return wrongName
      if (pins !== undefined && !pins.has(spkiPin(cert))) {
        return Object.assign(new Error('the upstream\'s key matches none of its pins'), { code: PIN_MISMATCH })
      }
      return undefined
    },
  }
}

const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'CERT_REVOKED',
])

/** The TLS failure an upstream error stands for, if it is one. */
export function tlsFailure(error: { code?: string; message?: string; cause?: unknown }): TlsFailure | undefined {
  for (let e: { code?: string; message?: string; cause?: unknown } | undefined = error, depth = 0; e && depth < 4; e = e.cause as typeof e, depth++) {
    const code = e.code
    if (code === undefined) continue
    if (code === PIN_MISMATCH) return 'pin_mismatch'
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return 'name_mismatch'
    if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return 'expired'
    if (UNTRUSTED.has(code)) return 'untrusted'
    if (code.startsWith('ERR_SSL_') || code === 'EPROTO') return 'handshake'
  }
  return undefined
}
