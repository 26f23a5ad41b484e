import { createPrivateKey, X509Certificate } from 'node:crypto'
import { Type, type Static } from '@sinclair/typebox'
import type { FieldPath } from './errors.js'
import { readConfigFile } from './files.js'

/**
 * `server.tls`: the HTTPS listener, beside the plain one or instead of it
 * (`server.listen: false`). Certificate and key come from files read at
 * every (re)load and watched by the reloader: a certificate rotated on disk
 * (cert-manager, a Secret volume's symlink swap) is used for new handshakes,
 * while open connections go on. Client certificates are optional: with a CA,
 * only certificates that chain to it count; without one (`request` only),
 * any certificate the client proves it holds, as RFC 8705 §2.2 allows for
 * self-signed binding.
 */

const strict = { additionalProperties: false } as const

export const TLS_DEFAULTS = { listen: '0.0.0.0:8443', minVersion: 'TLSv1.2' } as const

/**
 * TLS 1.2 suites with forward secrecy and AEAD only (Mozilla "intermediate");
 * TLS 1.3 suites are Node's defaults, all AEAD.
 */
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':')

export const ListenerTlsSchema = Type.Object(
  {
    listen: Type.Optional(Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$', default: TLS_DEFAULTS.listen, description: 'host:port of the HTTPS listener' })),
    cert: Type.String({ minLength: 1, description: 'PEM certificate chain (leaf first), relative to the config file' }),
    key: Type.String({ minLength: 1, description: 'PEM private key of the certificate' }),
    min_version: Type.Optional(Type.Union([Type.Literal('TLSv1.2'), Type.Literal('TLSv1.3')], { default: TLS_DEFAULTS.minVersion, description: 'the oldest TLS version accepted' })),
    client_certificates: Type.Optional(
      Type.Object(
        {
          mode: Type.Union([Type.Literal('request'), Type.Literal('require')], {
            description: 'request: asked for, optional (certificate-bound tokens need one); require: a connection without a valid one is refused in the handshake (needs ca)',
          }),
          ca: Type.Optional(Type.String({ minLength: 1, description: 'PEM CA bundle client certificates must chain to; without it (request only) any certificate the client holds the key of counts' })),
        },
        { ...strict, description: 'client certificates (mutual TLS): for certificate-bound tokens (RFC 8705)' },
      ),
    ),
  },
  { ...strict, description: 'the HTTPS listener: TLS 1.2+, ALPN http/1.1, certificate reloaded from disk' },
)

export type ListenerTlsConfig = Static<typeof ListenerTlsSchema>

export interface CompiledListenerTls {
  readonly host: string
  readonly port: number
  readonly cert: string
  readonly key: string
  readonly ca: string | undefined
  readonly clientCertificates: 'none' | 'request' | 'require'
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3'
}

type Report = (path: FieldPath, message: string) => void

/** Reads and checks the listener's files (added to `files`, which the reloader watches). */
export async function compileListenerTls(c: ListenerTlsConfig | undefined, baseDir: string, splitListen: (listen: string) => { host: string; port: number }, report: Report, files: string[]): Promise<CompiledListenerTls | undefined> {
  if (c === undefined) return undefined
  const at = (...rest: FieldPath): FieldPath => ['server', 'tls', ...rest]
  const { host, port } = splitListen(c.listen ?? TLS_DEFAULTS.listen)
  if (port > 65535) report(at('listen'), `port ${port} is out of range (0 to 65535)`)
  let ok = true
  const read = async (given: string | undefined, path: FieldPath): Promise<string | undefined> => {
    if (given === undefined) return undefined
    const text = await readConfigFile(given, baseDir, path, report, files)
    if (text === undefined) ok = false
    return text
  }
  const cert = await read(c.cert, at('cert'))
  const key = await read(c.key, at('key'))
  const clients = c.client_certificates
  const ca = await read(clients?.ca, at('client_certificates', 'ca'))
  if (clients?.mode === 'require' && clients.ca === undefined) report(at('client_certificates', 'ca'), 'mode require needs a ca: without one, any self-made certificate would pass')
  if (!ok || cert === undefined || key === undefined) return undefined
  try {
    const leaf = new X509Certificate(cert)
    if (!leaf.checkPrivateKey(createPrivateKey(key))) {
      report(at('key'), 'the key does not belong to the certificate')
      return undefined
    }
    if (new Date(leaf.validTo).getTime() < Date.now()) report(at('cert'), `the certificate expired on ${leaf.validTo}`)
  } catch (err) {
    report(at('cert'), `not a usable PEM certificate and key: ${(err as Error).message}`)
    return undefined
  }
  if (ca !== undefined) {
    try {
      if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new Error('holds no PEM certificate')
      new X509Certificate(ca)
    } catch (err) {
      report(at('client_certificates', 'ca'), `not a PEM CA bundle: ${(err as Error).message}`)
      return undefined
    }
  }
  return Object.freeze({ host, port, cert, key, ca, clientCertificates: clients?.mode ?? 'none', minVersion: c.min_version ?? TLS_DEFAULTS.minVersion })
}
