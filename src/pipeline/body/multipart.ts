import { GatewayError } from '../../errors.js'
import { readsAs } from '../extract/param-names.js'

/** Largest header block of one part; a larger one is malformed. */
const MAX_PART_HEADERS = 16 * 1024

/** The boundary of a multipart/form-data Content-Type; undefined when it has none. */
export function multipartBoundary(contentType: string): string | undefined {
  const m = /;\s*boundary\s*=\s*(?:"([^"]{1,200})"|([^;\s]{1,200}))/i.exec(contentType)
  return m ? (m[1] ?? m[2]) : undefined
}

/** The field names a part's Content-Disposition gives (name=, name*=), decoded as servers read them. */
function fieldNames(headers: string): string[] {
  const names: string[] = []
  for (const line of headers.split('\r\n')) {
    if (!/^content-disposition\s*:/i.test(line)) continue
    const params = /;\s*(name\*?)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))/gi
    for (let m = params.exec(line); m !== null; m = params.exec(line)) {
      let value = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '')
      if (m[1]!.endsWith('*')) {
        value = value.replace(/^[^']*'[^']*'/, '')
        try {
          value = decodeURIComponent(value)
        } catch {
          // left as it is
        }
      }
      names.push(value)
    }
  }
  return names
}

/**
 * Scans a multipart/form-data body as it streams, chunk by chunk, for fields
 * whose names some framework reads as one of `targets` (see param-names.ts);
 * `found` is told each. Keeps only a bounded tail between chunks.
 */
export class MultipartScanner {
  private readonly delimiter: string
  private state: 'preamble' | 'after' | 'headers' | 'body' | 'done' = 'preamble'
  private buf = ''

  constructor(
    boundary: string,
    private readonly targets: readonly string[],
    private readonly found: (reading: string) => void,
  ) {
    this.delimiter = '--' + boundary
  }

  push(chunk: Buffer): void {
    this.buf += chunk.toString('latin1')
    for (;;) {
      switch (this.state) {
        case 'done':
          this.buf = ''
          return
        case 'preamble':
        case 'body': {
          const at = this.findDelimiter()
          if (at < 0) {
            this.buf = this.buf.slice(-(this.delimiter.length + 2))
            return
          }
          this.buf = this.buf.slice(at + this.delimiter.length)
          this.state = 'after'
          break
        }
        case 'after': {
          if (this.buf.length < 2) return
          if (this.buf.startsWith('--')) {
            this.state = 'done'
            break
          }
          this.state = 'headers'
          break
        }
        case 'headers': {
          const end = this.buf.indexOf('\r\n\r\n')
          if (end < 0) {
            if (this.buf.length > MAX_PART_HEADERS) throw new GatewayError('request_malformed', 'a multipart part has too large a header block')
            return
          }
          for (const name of fieldNames(this.buf.slice(0, end))) {
            const reading = readsAs(name, this.targets)
            if (reading !== undefined) this.found(reading)
          }
          this.buf = this.buf.slice(end + 4)
          this.state = 'body'
          break
        }
      }
    }
  }

  /** A delimiter at the start of the body or after CRLF. */
  private findDelimiter(): number {
    if (this.state === 'preamble' && this.buf.startsWith(this.delimiter)) return 0
    const at = this.buf.indexOf('\r\n' + this.delimiter)
    return at < 0 ? -1 : at + 2
  }
}
