import { createHash, X509Certificate } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { TLSSocket } from 'node:tls'
import { GatewayError } from '../errors.js'

/**
 * The client certificate of a request, as RFC 8705 binding checks it: from
 * this connection's TLS handshake, or, behind a TLS-terminating proxy, from
 * the header that proxy sets — believed only from trusted proxy addresses.
 */
export interface ClientCertificate {
  /** base64url SHA-256 of the certificate's DER (what `cnf.x5t#S256` holds). */
  readonly x5t: string
  /** Subject alternative names, as "DNS:name", "URI:…", "IP Address:…", "email:…". */
  readonly names: readonly string[]
}

export type CertificateHeaderFormat = 'xfcc' | 'pem' | 'rfc9440'

export interface CertificateHeader {
  /** Lower-cased header name. */
  readonly name: string
  readonly format: CertificateHeaderFormat
}

function bad(detail: string): never {
  throw new GatewayError('client_certificate_invalid', detail)
}

const CONTROL = /[\u0000-\u001f\u007f]/

/**
 * Node's `subjectAltName` text: `Type:value` entries joined by ", ", a value
 * that holds a comma, a quote or a control byte written as a JSON string.
 * A name holding a NUL or any other control byte refuses the certificate (a
 * NUL cuts "evil.example\0.good.example" short in C code: Envoy
 * CVE-2026-26311's class).
 */
export function parseSubjectAltNames(text: string | undefined): string[] {
  if (text === undefined || text === '') return []
  const names: string[] = []
  let i = 0
  while (i < text.length) {
    const colon = text.indexOf(':', i)
    if (colon < 0) bad('the client certificate\'s alternative names cannot be read')
    const type = text.slice(i, colon)
    let value: string
    let next: number
    if (text[colon + 1] === '"') {
      let end = colon + 2
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1
      try {
        value = JSON.parse(text.slice(colon + 1, end + 1)) as string
      } catch {
        bad('the client certificate\'s alternative names cannot be read')
      }
      next = end + 1
    } else {
      const comma = text.indexOf(', ', colon)
      next = comma < 0 ? text.length : comma
      value = text.slice(colon + 1, next)
    }
    if (CONTROL.test(type) || CONTROL.test(value)) bad('the client certificate has an alternative name with a control character')
    names.push(`${type}:${value}`)
    if (next < text.length && text.slice(next, next + 2) !== ', ') bad('the client certificate\'s alternative names cannot be read')
    i = next + 2
  }
  return names
}

/** A certificate from its DER: thumbprint and checked names. */
export function certificateFromDer(der: Buffer): ClientCertificate {
  let cert: X509Certificate
  try {
    cert = new X509Certificate(der)
  } catch {
    bad('the client certificate cannot be parsed')
  }
  if (CONTROL.test(cert.subject)) bad('the client certificate\'s subject holds a control character')
  return { x5t: createHash('sha256').update(cert.raw).digest('base64url'), names: parseSubjectAltNames(cert.subjectAltName) }
}

function fromPem(text: string): ClientCertificate {
  const m = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/.exec(text)
  if (!m) bad('the client certificate header holds no PEM certificate')
  return certificateFromDer(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'))
}

function percentDecoded(value: string): string {
  try {
    return decodeURIComponent(value)
  } catch {
    bad('the client certificate header is not validly percent-encoded')
  }
}

/** Splits on `sep` outside double quotes (XFCC elements and pairs). */
function splitOutsideQuotes(text: string, sep: string): string[] {
  const out: string[] = []
  let quoted = false
  let start = 0
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === '\\' && quoted) i++
    else if (c === '"') quoted = !quoted
    else if (c === sep && !quoted) {
      out.push(text.slice(start, i))
      start = i + 1
    }
  }
  if (quoted) bad('the X-Forwarded-Client-Cert header has an unterminated quote')
  out.push(text.slice(start))
  return out
}

/**
 * Envoy's X-Forwarded-Client-Cert: one element (what the proxy facing the
 * client saw; set `forward_client_cert_details: SANITIZE_SET`), `Cert` (the
 * URL-encoded PEM) and/or `Hash` (hex SHA-256 of the DER). Several elements
 * are refused: which one is the client's depends on the proxies' settings.
 */
function fromXfcc(value: string): ClientCertificate {
  const elements = splitOutsideQuotes(value, ',')
  if (elements.length !== 1) bad('the X-Forwarded-Client-Cert header describes more than one certificate')
  let cert: string | undefined
  let hash: string | undefined
  for (const pair of splitOutsideQuotes(elements[0]!, ';')) {
    const eq = pair.indexOf('=')
    if (eq < 1) bad('the X-Forwarded-Client-Cert header is malformed')
    const key = pair.slice(0, eq).trim().toLowerCase()
    let v = pair.slice(eq + 1).trim()
    if (v.startsWith('"')) v = v.slice(1, -1).replace(/\\(.)/g, '$1')
    if (key === 'cert') cert = v
    else if (key === 'hash') hash = v
  }
  if (hash !== undefined && !/^[0-9a-fA-F]{64}$/.test(hash)) bad('the X-Forwarded-Client-Cert Hash is not a hex SHA-256')
  if (cert !== undefined) {
    const parsed = fromPem(percentDecoded(cert))
    if (hash !== undefined && Buffer.from(hash, 'hex').toString('base64url') !== parsed.x5t) bad('the X-Forwarded-Client-Cert Hash is not the hash of its Cert')
    return parsed
  }
  if (hash !== undefined) return { x5t: Buffer.from(hash, 'hex').toString('base64url'), names: [] }
  bad('the X-Forwarded-Client-Cert header carries neither Cert nor Hash')
}

/** RFC 9440 Client-Cert: the DER as a structured-field byte sequence (`:base64:`). */
function fromRfc9440(value: string): ClientCertificate {
  const m = /^\s*:([A-Za-z0-9+/]+={0,2}):\s*$/.exec(value)
  if (!m) bad('the Client-Cert header is not a byte sequence')
  return certificateFromDer(Buffer.from(m[1]!, 'base64'))
}

function fromHeader(req: IncomingMessage, header: CertificateHeader): ClientCertificate | undefined {
  let value: string | undefined
  const raw = req.rawHeaders
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() !== header.name) continue
    if (value !== undefined) bad('the request carries the client certificate header more than once')
    value = raw[i + 1]!
  }
  if (value === undefined || value.trim() === '') return undefined
  switch (header.format) {
    case 'xfcc':
      return fromXfcc(value)
    case 'pem':
      return fromPem(percentDecoded(value))
    case 'rfc9440':
      return fromRfc9440(value)
  }
}

/** Each TLS connection's certificate, read once. */
const byConnection = new WeakMap<object, ClientCertificate | null>()

function fromConnection(socket: TLSSocket, acceptUnverified: boolean): ClientCertificate | undefined {
  const known = byConnection.get(socket)
  if (known !== undefined) return known ?? undefined
  let cert: ClientCertificate | null = null
  // With a CA, only a certificate that chains to it; without one, any certificate
  // the client proved it holds in the handshake (RFC 8705 §2.2, self-signed).
  const peer = socket.getPeerX509Certificate?.()
  if (peer !== undefined && (socket.authorized || acceptUnverified)) cert = certificateFromDer(peer.raw)
  byConnection.set(socket, cert)
  return cert ?? undefined
}

/**
 * The request's client certificate: from the configured header when the
 * peer is a trusted proxy, else from the TLS connection, else none. The
 * header from anyone else is ignored here (and never forwarded).
 */
export function clientCertificate(req: IncomingMessage, sources: CertificateSources, fromTrustedProxy: () => boolean): ClientCertificate | undefined {
  if (sources.header !== undefined && fromTrustedProxy()) return fromHeader(req, sources.header)
  const socket = req.socket as TLSSocket | null
  if (socket?.encrypted) return fromConnection(socket, sources.acceptUnverified)
  return undefined
}

export interface CertificateSources {
  /** The header a trusted TLS-terminating proxy passes the certificate in. */
  readonly header: CertificateHeader | undefined
  /** The TLS listener has no client CA: any certificate proven in the handshake counts. */
  readonly acceptUnverified: boolean
}
