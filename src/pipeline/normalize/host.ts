import { GatewayError } from '../../errors.js'

/** The host routes match on: lower-cased, without the root dot ("API.example.com." is "api.example.com"); "" for none. */
export function canonicalHost(hostname: string | undefined): string {
  if (!hostname) return ''
  const lower = hostname.toLowerCase()
  return lower.endsWith('.') ? lower.slice(0, -1) : lower
}

/** A Host value: a registered name or IPv4 address, or a bracketed IPv6 literal, with an optional port. */
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})?)*\.?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?$/
/** Whether a value is a well-formed Host (name or address, optional port). */
export function isHostValue(value: string | undefined): value is string {
  return value !== undefined && value !== '' && HOST.test(value)
}

const ABSOLUTE = /^(https?):\/\/([^/?#]*)([^#]*)$/i

/**
 * RFC 9112 §3.2: the request target in origin form, after the checks that
 * keep every server on the path agreeing on the host: exactly one Host
 * header, a well-formed one, and an absolute-form target only when its
 * authority is that very Host (a proxy would route by one, a backend by the
 * other). Anything else is 400 `host_invalid`.
 */
export function originForm(rawUrl: string, rawHeaders: readonly string[]): string {
  let host: string | undefined
  let authority: string | undefined
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!
    if (name.length === 4 && name.toLowerCase() === 'host') {
      if (host !== undefined) throw new GatewayError('host_invalid', 'the request has more than one Host header')
      host = rawHeaders[i + 1]!
    } else if (name === ':authority') {
      authority = rawHeaders[i + 1]!
    }
  }
  // HTTP/2 (RFC 9113 §8.3.1): :authority names the host; a Host beside it must name the same one.
  if (authority !== undefined) {
    if (host !== undefined && host.toLowerCase() !== authority.toLowerCase()) throw new GatewayError('host_invalid', 'the Host header and :authority name different hosts')
    host = authority
  }
  if (host !== undefined && host !== '' && !HOST.test(host)) throw new GatewayError('host_invalid', 'the Host header is not a host name')
  if (rawUrl.charCodeAt(0) === 0x2f) return rawUrl
  const absolute = ABSOLUTE.exec(rawUrl)
  if (absolute === null) throw new GatewayError('path_invalid', 'the request target must be an absolute path or an absolute http URL')
  if (host === undefined || absolute[2]!.toLowerCase() !== host.toLowerCase()) {
    throw new GatewayError('host_invalid', 'the Host header does not name the authority of the request target')
  }
  const rest = absolute[3]!
  return rest.startsWith('/') ? rest : '/' + rest
}

/**
 * Protocol upgrades other than a WebSocket handshake on a route that allows
 * it (pipeline/websocket/) are refused with 501 and a reason, rather than
 * forwarded as a plain request their client would misread. `h2c` alone may
 * be ignored, as RFC 9113 §3.2 lets a server do: its client then goes on in
 * HTTP/1.1.
 */
export function refuseUpgrade(upgrade: string | undefined): void {
  if (upgrade === undefined || upgrade.trim().toLowerCase() === 'h2c') return
  throw new GatewayError('upgrade_unsupported', /^websocket$/i.test(upgrade.trim()) ? 'a WebSocket handshake needs Connection: Upgrade, on a route that allows WebSocket' : 'this protocol upgrade is not supported (WebSocket only)')
}

/** What RFC 9113 §8.2.1 forbids in an HTTP/2 field value: NUL, CR, LF, and white space at either end. */
const BAD_H2_VALUE = /[\0\r\n]|^[ \t]|[ \t]$/

/**
 * HTTP/2 field values are checked here: nghttp2 lets CR, LF and NUL through,
 * and an HTTP/1.1 upstream would read a CRLF as a new header (h2 → h1
 * header injection). HTTP/1.1 requests never get here with them: Node's
 * parser refuses them.
 */
export function refuseMalformedH2Fields(httpVersionMajor: number, rawHeaders: readonly string[]): void {
  if (httpVersionMajor !== 2) return
  for (let i = 1; i < rawHeaders.length; i += 2) {
    if (BAD_H2_VALUE.test(rawHeaders[i]!)) throw new GatewayError('request_malformed', 'an HTTP/2 header value holds a character HTTP forbids there')
  }
}
