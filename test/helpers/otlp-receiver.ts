import { gunzipSync } from 'node:zlib'
import { listen, type Listening } from './servers.js'

/** A span as the receiver decoded it (OTLP/JSON or OTLP/protobuf). */
export interface ReceivedSpan {
  traceId: string
  spanId: string
  parentSpanId: string
  name: string
  /** 1 internal, 2 server, 3 client. */
  kind: number
  attributes: Record<string, string | number | boolean>
  status: { code: number; message: string }
  links: { traceId: string; spanId: string }[]
  service: string
}

export interface OtlpReceiver extends Listening {
  readonly endpoint: string
  readonly spans: ReceivedSpan[]
  /** Content types of the exports received. */
  readonly contentTypes: string[]
  /** Resolves once a span matches (or rejects after ms). */
  waitFor(match: (s: ReceivedSpan) => boolean, ms?: number): Promise<ReceivedSpan>
}

/** A loopback OTLP/HTTP traces endpoint that decodes what it receives. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = []
  const contentTypes: string[] = []
  const s = await listen((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      let body = Buffer.concat(chunks)
      if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body)
      const type = String(req.headers['content-type'] ?? '')
      contentTypes.push(type)
      try {
        spans.push(...(type.includes('json') ? fromJson(JSON.parse(body.toString('utf8'))) : fromProtobuf(body)))
        res.writeHead(200, { 'content-type': type.includes('json') ? 'application/json' : 'application/x-protobuf' })
        res.end(type.includes('json') ? '{}' : '')
      } catch {
        res.writeHead(400)
        res.end()
      }
    })
  })
  return {
    ...s,
    endpoint: `${s.url}/v1/traces`,
    spans,
    contentTypes,
    async waitFor(match, ms = 10_000) {
      const end = Date.now() + ms
      for (;;) {
        const found = spans.find(match)
        if (found) return found
        if (Date.now() > end) throw new Error(`no such span; received: ${spans.map((x) => x.name).join(', ') || 'none'}`)
        await new Promise((r) => setTimeout(r, 25))
      }
    },
  }
}

type Json = Record<string, unknown>

function jsonValue(v: Json): string | number | boolean {
  if ('stringValue' in v) return v.stringValue as string
  if ('intValue' in v) return Number(v.intValue)
  if ('doubleValue' in v) return Number(v.doubleValue)
  if ('boolValue' in v) return Boolean(v.boolValue)
  return JSON.stringify(v)
}

function fromJson(doc: Json): ReceivedSpan[] {
  const out: ReceivedSpan[] = []
  for (const rs of (doc.resourceSpans as Json[]) ?? []) {
    const resource = Object.fromEntries(((rs.resource as Json)?.attributes as Json[] ?? []).map((a) => [a.key, jsonValue(a.value as Json)]))
    for (const ss of (rs.scopeSpans as Json[]) ?? []) {
      for (const sp of (ss.spans as Json[]) ?? []) {
        out.push({
          traceId: String(sp.traceId),
          spanId: String(sp.spanId),
          parentSpanId: String(sp.parentSpanId ?? ''),
          name: String(sp.name),
          kind: Number(sp.kind),
          attributes: Object.fromEntries(((sp.attributes as Json[]) ?? []).map((a) => [a.key, jsonValue(a.value as Json)])),
          status: { code: Number((sp.status as Json)?.code ?? 0), message: String((sp.status as Json)?.message ?? '') },
          links: ((sp.links as Json[]) ?? []).map((l) => ({ traceId: String(l.traceId), spanId: String(l.spanId) })),
          service: String(resource['service.name'] ?? ''),
        })
      }
    }
  }
  return out
}

/** Protobuf fields of a message: number → values (varints as numbers, length-delimited as buffers). */
function fields(buf: Buffer): Map<number, (number | Buffer)[]> {
  const out = new Map<number, (number | Buffer)[]>()
  let i = 0
  const varint = () => {
    let result = 0
    let shift = 0
    for (;;) {
      const b = buf[i++]!
      result += (b & 0x7f) * 2 ** shift
      if (b < 0x80) return result
      shift += 7
    }
  }
  while (i < buf.length) {
    const key = varint()
    const field = Math.floor(key / 8)
    const wire = key & 7
    let value: number | Buffer
    if (wire === 0) value = varint()
    else if (wire === 1) {
      value = buf.readDoubleLE(i)
      i += 8
    } else if (wire === 2) {
      const len = varint()
      value = buf.subarray(i, i + len)
      i += len
    } else if (wire === 5) {
      value = buf.readUInt32LE(i)
      i += 4
    } else throw new Error(`wire type ${wire}`)
    const list = out.get(field) ?? []
    list.push(value)
    out.set(field, list)
  }
  return out
}

const msgs = (m: Map<number, (number | Buffer)[]>, n: number) => (m.get(n) ?? []).filter((v): v is Buffer => Buffer.isBuffer(v))
const str = (m: Map<number, (number | Buffer)[]>, n: number) => (msgs(m, n)[0] ?? Buffer.alloc(0)).toString('utf8')
const hex = (m: Map<number, (number | Buffer)[]>, n: number) => (msgs(m, n)[0] ?? Buffer.alloc(0)).toString('hex')

function attributes(list: Buffer[]): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {}
  for (const kvb of list) {
    const kv = fields(kvb)
    const any = fields(msgs(kv, 2)[0] ?? Buffer.alloc(0))
    const value = any.has(1) ? str(any, 1) : any.has(2) ? any.get(2)![0] === 1 : any.has(3) ? Number(any.get(3)![0]) : any.has(4) ? Number(any.get(4)![0]) : ''
    out[str(kv, 1)] = value
  }
  return out
}

function fromProtobuf(body: Buffer): ReceivedSpan[] {
  const out: ReceivedSpan[] = []
  for (const rsb of msgs(fields(body), 1)) {
    const rs = fields(rsb)
    const resource = attributes(msgs(fields(msgs(rs, 1)[0] ?? Buffer.alloc(0)), 1))
    for (const ssb of msgs(rs, 2)) {
      for (const spb of msgs(fields(ssb), 2)) {
        const sp = fields(spb)
        const status = fields(msgs(sp, 15)[0] ?? Buffer.alloc(0))
        out.push({
          traceId: hex(sp, 1),
          spanId: hex(sp, 2),
          parentSpanId: hex(sp, 4),
          name: str(sp, 5),
          kind: Number(sp.get(6)?.[0] ?? 0),
          attributes: attributes(msgs(sp, 9)),
          status: { code: Number(status.get(3)?.[0] ?? 0), message: str(status, 2) },
          links: msgs(sp, 13).map((lb) => {
            const l = fields(lb)
            return { traceId: hex(l, 1), spanId: hex(l, 2) }
          }),
          service: String(resource['service.name'] ?? ''),
        })
      }
    }
  }
  return out
}
