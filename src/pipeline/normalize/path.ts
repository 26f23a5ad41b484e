import { GatewayError } from '../../errors.js'

/**
 * The request target, split and made canonical. `path` is the one string that
 * is matched, authorized and forwarded; `query` is forwarded as received
 * (with its leading `?`, or empty) and never takes part in matching.
 */
export interface RequestTarget {
  readonly path: string
  readonly query: string
}

// Character classes of a raw path byte (RFC 3986 §3.3).
const PLAIN = 1 // unreserved except '.': needs no work at all
const PCHAR = 2 // allowed literally: '.', sub-delims other than ';', ':' and '@'
const ENCODE = 3 // legal in the wire format Node accepts but not in a canonical path: percent-encode
const REJECT = 4 // ambiguous between servers: refuse the request

const CLASS = new Uint8Array(256).fill(ENCODE)
for (let c = 0; c < 0x20; c++) CLASS[c] = REJECT
CLASS[0x7f] = REJECT
for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~') CLASS[ch.charCodeAt(0)] = PLAIN
for (const ch of "!$&'()*+,=:@.") CLASS[ch.charCodeAt(0)] = PCHAR
CLASS[0x5c] = REJECT // '\' is a separator on some backends
CLASS[0x3b] = REJECT // ';' starts path parameters on some backends ("/public/..;/admin")
CLASS[0x23] = REJECT // '#' never belongs in a request target

// What a percent-encoded byte becomes: decoded when it is unreserved, kept
// encoded otherwise, refused when decoding it would change the path's structure.
const UNRESERVED = new Uint8Array(256)
for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~') UNRESERVED[ch.charCodeAt(0)] = 1
const FORBIDDEN_ENCODED = new Set([0x2f /* / */, 0x5c /* \ */, 0x3b /* ; */, 0x00])

const HEX = '0123456789ABCDEF'
const utf8 = new TextDecoder('utf-8', { fatal: true })

function invalid(why: string): never {
  throw new GatewayError('path_invalid', why)
}

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30
  if (code >= 0x41 && code <= 0x46) return code - 0x37
  if (code >= 0x61 && code <= 0x66) return code - 0x57
  return -1
}

/**
 * Splits the raw request target into a canonical path and the raw query.
 *
 * Canonical means: percent-encoded unreserved characters decoded, other
 * percent-encodings upper-cased, characters outside RFC 3986 `pchar`
 * percent-encoded, empty segments (duplicate slashes) and dot segments
 * removed (never above the root). A trailing slash is kept.
 *
 * Refused with `path_invalid` (400): targets not in origin form, malformed
 * percent-encoding, encoded `/` `\` `;` NUL, raw `\` `;` `#` or control
 * characters, and encoded bytes that are not valid UTF-8 (overlong forms).
 */
export function normalizeTarget(rawUrl: string): RequestTarget {
  if (rawUrl.charCodeAt(0) !== 0x2f) invalid('the request target must be an absolute path')
  let end = rawUrl.indexOf('?')
  if (end === -1) end = rawUrl.length
  const query = rawUrl.slice(end)

  // Fast path: only plain characters, no dot or empty segments.
  let simple = true
  for (let i = 1; i < end; i++) {
    const c = rawUrl.charCodeAt(i)
    if (c === 0x2f) {
      if (rawUrl.charCodeAt(i - 1) === 0x2f) { simple = false; break }
    } else if (c > 0xff || CLASS[c] !== PLAIN) {
      simple = false
      break
    }
  }
  if (simple) return { path: end === rawUrl.length ? rawUrl : rawUrl.slice(0, end), query }
  return { path: canonicalPath(rawUrl, end), query }
}

function canonicalPath(raw: string, end: number): string {
  const segments: string[] = []
  let trailingSlash = false
  let start = 1
  while (start <= end) {
    let stop = raw.indexOf('/', start)
    if (stop === -1 || stop > end) stop = end
    const segment = canonicalSegment(raw, start, stop)
    const last = stop === end
    if (segment === '' || segment === '.') {
      trailingSlash = last
    } else if (segment === '..') {
      segments.pop()
      trailingSlash = last
    } else {
      segments.push(segment)
      trailingSlash = false
    }
    start = stop + 1
  }
  if (segments.length === 0) return '/'
  return '/' + segments.join('/') + (trailingSlash ? '/' : '')
}

function canonicalSegment(raw: string, start: number, stop: number): string {
  let out = ''
  let sawHighByte = false
  for (let i = start; i < stop; i++) {
    const c = raw.charCodeAt(i)
    if (c === 0x25) {
      const hi = hexValue(raw.charCodeAt(i + 1))
      const lo = i + 2 < stop ? hexValue(raw.charCodeAt(i + 2)) : -1
      if (hi < 0 || lo < 0 || i + 2 >= stop) invalid('malformed percent-encoding in the path')
      const byte = hi * 16 + lo
      i += 2
      if (FORBIDDEN_ENCODED.has(byte) || byte < 0x20 || byte === 0x7f) {
        invalid('the path contains an encoded separator or control character')
      }
      if (UNRESERVED[byte] === 1) {
        out += String.fromCharCode(byte)
      } else {
        out += '%' + HEX[hi] + HEX[lo]
        if (byte >= 0x80) sawHighByte = true
      }
      continue
    }
    if (c > 0xff) invalid('the path contains a character outside the request-target syntax')
    const cls = CLASS[c]
    if (cls === REJECT) invalid('the path contains a character that backends may read differently')
    if (cls === ENCODE) {
      out += '%' + HEX[c >> 4] + HEX[c & 15]
      if (c >= 0x80) sawHighByte = true
    } else {
      out += raw[i]
    }
  }
  if (sawHighByte) assertUtf8(out)
  return out
}

// Encoded bytes above 0x7f must form valid UTF-8: an overlong "%C0%AE" is a
// '.' to some decoders and must not slip past dot-segment removal.
function assertUtf8(canonicalSegment: string): void {
  const bytes: number[] = []
  for (let i = 0; i < canonicalSegment.length; i++) {
    if (canonicalSegment.charCodeAt(i) === 0x25) {
      bytes.push(Number.parseInt(canonicalSegment.slice(i + 1, i + 3), 16))
      i += 2
    } else {
      bytes.push(canonicalSegment.charCodeAt(i))
    }
  }
  try {
    utf8.decode(Uint8Array.from(bytes))
  } catch {
    invalid('the path contains percent-encoded bytes that are not valid UTF-8')
  }
}

/**
 * The path with its ASCII letters in lower case, percent-encodings left as
 * they are (their hex digits stay upper-case): what routes match, and what is
 * forwarded, under server.case_insensitive_paths.
 */
export function foldPathCase(path: string): string {
  if (!/[A-Z]/.test(path)) return path
  return path.replace(/%[0-9A-F]{2}|[A-Z]+/g, (m) => (m.charCodeAt(0) === 0x25 ? m : m.toLowerCase()))
}

/** The canonical target, its path folded to lower case when the configuration says so. */
export function canonicalTarget(rawUrl: string, foldCase: boolean): RequestTarget {
  const target = normalizeTarget(rawUrl)
  return foldCase ? { path: foldPathCase(target.path), query: target.query } : target
}
