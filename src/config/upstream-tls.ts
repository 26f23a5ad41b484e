import { createHash, createPrivateKey, X509Certificate } from 'node:crypto'
import { Type, type Static } from '@sinclair/typebox'
import type { UpstreamTls } from '../pipeline/forward/tls.js'
import type { FieldPath } from './errors.js'
import { readConfigFile } from './files.js'

/**
 * An upstream's `tls`: the CA bundle that verifies it, the client
 * certificate the gateway presents (mutual TLS), the name checked, and
 * optional SPKI pins. Schema and compile step side by side; the files are
 * read at every (re)load, and the reloader watches them, so a certificate
 * rotated on disk (cert-manager, a Secret volume) is used for new
 * connections while requests in flight finish on the old ones.
 */

const strict = { additionalProperties: false } as const

export const UpstreamTlsSchema = Type.Object(
  {
    ca: Type.Optional(Type.String({ minLength: 1, description: 'PEM CA bundle that verifies the upstream (default: the system roots), relative to the config file' })),
    cert: Type.Optional(Type.String({ minLength: 1, description: 'PEM client certificate (chain) the gateway presents: mutual TLS' })),
    key: Type.Optional(Type.String({ minLength: 1, description: 'PEM private key of the client certificate' })),
    server_name: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$', description: 'the name sent (SNI) and checked in the upstream\'s certificate (default: the URL\'s host)' })),
    pin_sha256: Type.Optional(
      Type.Array(Type.String({ pattern: '^[A-Za-z0-9+/]{43}=$', description: 'base64 SHA-256 of a SubjectPublicKeyInfo (as in HPKP / curl --pinnedpubkey sha256//…)' }), {
        minItems: 1,
        uniqueItems: true,
        description: 'the upstream\'s leaf key must be one of these (list the next key before rotating it in)',
      }),
    ),
  },
  { ...strict, description: 'TLS to this upstream (https:// URLs): verification, client certificate, pins' },
)

export type UpstreamTlsConfig = Static<typeof UpstreamTlsSchema>

type Report = (path: FieldPath, message: string, atKey?: boolean) => void

/** Reads and checks an upstream's TLS material; the files read are added to `files` (the reloader watches them). */
export async function compileUpstreamTls(config: UpstreamTlsConfig | undefined, url: URL, baseDir: string, at: FieldPath, report: Report, files: string[]): Promise<UpstreamTls | undefined> {
  if (config === undefined) return undefined
  if (url.protocol !== 'https:') {
    report(at, 'tls settings need an https:// upstream URL')
    return undefined
  }
  if ((config.cert === undefined) !== (config.key === undefined)) {
    report(at, 'a client certificate needs both cert and key')
    return undefined
  }
  let ok = true
  const read = async (name: 'ca' | 'cert' | 'key'): Promise<string | undefined> => {
    const given = config[name]
    if (given === undefined) return undefined
    const text = await readConfigFile(given, baseDir, [...at, name], report, files)
    if (text === undefined) ok = false
    return text
  }
  const ca = await read('ca')
  const cert = await read('cert')
  const key = await read('key')
  if (!ok) return undefined
  try {
    if (ca !== undefined && !ca.includes('-----BEGIN CERTIFICATE-----')) throw Object.assign(new Error('holds no PEM certificate'), { field: 'ca' })
    if (ca !== undefined) new X509Certificate(ca)
  } catch (err) {
    report([...at, 'ca'], `not a PEM CA bundle: ${(err as Error).message}`)
    return undefined
  }
  if (cert !== undefined && key !== undefined) {
    try {
      const leaf = new X509Certificate(cert)
      if (!leaf.checkPrivateKey(createPrivateKey(key))) {
        report([...at, 'key'], 'the key does not belong to the certificate')
        return undefined
      }
      if (new Date(leaf.validTo).getTime() < Date.now()) report([...at, 'cert'], `the client certificate expired on ${leaf.validTo}`)
    } catch (err) {
      report([...at, 'cert'], `not a usable PEM certificate and key: ${(err as Error).message}`)
      return undefined
    }
  }
  const pins = config.pin_sha256 ? new Set(config.pin_sha256) : undefined
  const fingerprint = createHash('sha256')
    .update([ca ?? '', cert ?? '', key ?? '', config.server_name ?? '', [...(pins ?? [])].join(',')].join('\u0000'))
    .digest('base64url')
    .slice(0, 16)
  return Object.freeze({ ca, cert, key, serverName: config.server_name, pins, fingerprint })
}
