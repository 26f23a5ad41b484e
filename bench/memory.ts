// The memory phase: a gateway of its own per kind of token, sent twice its
// cache bound of distinct tokens (the first ones are evicted), while a probe
// asks its admin listener for /healthz every 100 ms. Reports peak RSS
// (VmHWM), the probe's slowest answers and the gateway's own event-loop delay
// (monitorEventLoopDelay, read through its metrics: the histogram restarts at
// each scrape, so one scrape before the phase and one after bound it).
import { readFileSync } from 'node:fs'
import { Agent, get } from 'node:http'

export interface MemoryResult {
  readonly kind: string
  readonly tokens: number
  readonly rps: number
  readonly rss_start_mb: number
  readonly peak_rss_mb: number
  readonly probe_p99_ms: number
  readonly probe_max_ms: number
  readonly event_loop_p99_ms: number
  readonly event_loop_max_ms: number
}

function status(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`${field}:\\s+([0-9]+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Math.round(Number(m[1]) / 1024) : NaN
}

const agent = new Agent({ keepAlive: true, maxSockets: 1 })

function getText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    get(url, { agent }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => resolve(body))
    }).on('error', reject)
  })
}

function gauge(metrics: string, name: string): number {
  const m = new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(metrics)
  return m ? Number(m[1]) : NaN
}

export async function memoryPhase(options: {
  readonly kind: string
  readonly pid: number
  readonly adminUrl: string
  readonly tokens: number
  /** Runs the load (the token stream), resolving with its req/s. */
  readonly load: () => Promise<number>
}): Promise<MemoryResult> {
  const rssStart = status(options.pid, 'VmRSS')
  await getText(`${options.adminUrl}/metrics`) // restarts the event-loop histogram
  const probes: number[] = []
  let probing = true
  const probe = (async () => {
    while (probing) {
      const started = performance.now()
      await getText(`${options.adminUrl}/healthz`).catch(() => undefined)
      probes.push(performance.now() - started)
      await new Promise((r) => setTimeout(r, 100))
    }
  })()
  const rps = await options.load()
  probing = false
  await probe
  const metrics = await getText(`${options.adminUrl}/metrics`)
  probes.sort((a, b) => a - b)
  const at = (p: number) => probes[Math.min(probes.length - 1, Math.floor(probes.length * p))] ?? NaN
  return {
    kind: options.kind,
    tokens: options.tokens,
    rps: Math.round(rps),
    rss_start_mb: rssStart,
    peak_rss_mb: status(options.pid, 'VmHWM'),
    probe_p99_ms: Math.round(at(0.99) * 10) / 10,
    probe_max_ms: Math.round((probes[probes.length - 1] ?? NaN) * 10) / 10,
    event_loop_p99_ms: Math.round(gauge(metrics, 'nodejs_eventloop_lag_p99_seconds') * 10000) / 10,
    event_loop_max_ms: Math.round(gauge(metrics, 'nodejs_eventloop_lag_max_seconds') * 10000) / 10,
  }
}
