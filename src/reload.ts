import { createHash } from 'node:crypto'
import { watch, type FSWatcher } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import type { Logger } from 'pino'
import type { Gateway } from './app.js'
import type { CompiledConfig } from './config/compile.js'
import { compileConfigText } from './config/index.js'
import { ConfigError, formatIssue } from './config/errors.js'
import type { DependencyObserver, Metrics } from './metrics/metrics.js'

export type ReloadResult = 'applied' | 'unchanged' | 'refused'

/** How often the file is checked besides watch events (some volumes send none). */
export const POLL_INTERVAL_MS = 5000
const DEBOUNCE_MS = 100

/**
 * Re-reads the configuration file on SIGHUP and when it changes, including
 * the symlink swap a Kubernetes ConfigMap volume does (the directory is
 * watched, and the file's content compared). A valid configuration is swapped
 * in atomically: requests in flight finish on the one they started with. An
 * invalid one is refused, logged with its file and line, counted, and the
 * configuration in force keeps serving.
 */
export class ConfigReloader {
  private lastHash: string | undefined
  private watcher: FSWatcher | undefined
  private poll: NodeJS.Timeout | undefined
  private debounce: NodeJS.Timeout | undefined
  private queue: Promise<ReloadResult> = Promise.resolve('unchanged')

  constructor(
    private readonly file: string,
    private readonly gateway: Gateway,
    private readonly logger: Logger,
    private readonly metrics: Metrics,
    private readonly observer: DependencyObserver,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  /** Remembers the content in force, then watches for changes. */
  async start(): Promise<void> {
    const files = await filesDigest(this.gateway.current.files)
    this.lastHash = await readFile(this.file, 'utf8').then((text) => digest(text + files), () => undefined)
    try {
      this.watcher = watch(dirname(this.file), (_event, name) => {
        // ConfigMap updates rename "..data"; an editor writes the file itself.
        if (name === null || name === basename(this.file) || name.startsWith('..')) this.schedule()
      })
      this.watcher.on('error', () => undefined)
    } catch (err) {
      this.logger.warn({ err }, 'cannot watch the configuration directory; relying on polling and SIGHUP')
    }
    this.poll = setInterval(() => this.schedule(), POLL_INTERVAL_MS)
    this.poll.unref()
  }

  stop(): void {
    this.watcher?.close()
    clearInterval(this.poll)
    clearTimeout(this.debounce)
  }

  private schedule(): void {
    clearTimeout(this.debounce)
    this.debounce = setTimeout(() => void this.reload('watch'), DEBOUNCE_MS)
  }


  /** Reloads now. A `watch` trigger skips content already seen; `signal` always re-reads. */
  reload(trigger: 'watch' | 'signal'): Promise<ReloadResult> {
    // Never rejects: a reload that fails in any way is refused, and the configuration in force keeps serving.
    this.queue = this.queue.then(() =>
      this.run(trigger).catch((err: unknown) => {
        this.refused([`${this.file}: the reload failed (${(err as Error)?.message ?? String(err)})`], err)
        return 'refused' as const
      }),
    )
    return this.queue
  }

  private async run(trigger: 'watch' | 'signal'): Promise<ReloadResult> {
    let text: string
    try {
      text = await readFile(this.file, 'utf8')
    } catch (err) {
      if (trigger === 'watch') return 'unchanged' // mid-swap; the next event or poll sees the new file
      this.refused([`${this.file}: cannot read the file (${(err as Error).message})`])
      return 'refused'
    }
    // The key and certificate files it names count as its content: a rotated certificate is a change.
    const hash = digest(text + (await filesDigest(this.gateway.current.files)))
    if (trigger === 'watch' && hash === this.lastHash) return 'unchanged'
    this.lastHash = hash
    let next: CompiledConfig
    try {
      next = await compileConfigText(text, this.file, { previous: this.gateway.current, observer: this.observer, env: this.env })
    } catch (err) {
      // Whatever the failure, the configuration in force keeps serving.
      if (err instanceof ConfigError) this.refused(err.issues.map(formatIssue))
      else this.refused([`${this.file}: the configuration could not be compiled (${(err as Error)?.message ?? String(err)})`], err)
      return 'refused'
    }
    const needRestart = restartOnly(this.gateway.current, next)
    if (needRestart.length > 0) {
      this.logger.warn({ fields: needRestart }, 'configuration changes that take effect only after a restart')
    }
    for (const notice of next.notices) this.logger.warn(notice)
    this.gateway.setConfig(next)
    this.metrics.reload('success')
    this.logger.info({ trigger, routes: next.router.routes.length, issuers: next.issuers.size }, 'configuration reloaded')
    return 'applied'
  }

  private refused(errors: string[], err?: unknown): void {
    this.metrics.reload('failure')
    this.logger.error({ errors, ...(err === undefined ? {} : { err }) }, 'configuration refused; the previous configuration stays in force')
  }
}

/** The contents of the files a configuration read, as one digest (a missing file reads as empty: the compile step reports it). */
async function filesDigest(files: readonly string[]): Promise<string> {
  const parts = await Promise.all(files.map((f) => readFile(f, 'utf8').catch(() => '')))
  return digest(parts.join('\u0000'))
}

/** What tells one content of the file from another. */
function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex')
}

/** Settings read once at start. */
function restartOnly(a: CompiledConfig, b: CompiledConfig): string[] {
  const changed: string[] = []
  const same = (x: unknown, y: unknown) => JSON.stringify(x) === JSON.stringify(y)
  if (a.server.plain !== b.server.plain || a.server.host !== b.server.host || a.server.port !== b.server.port) changed.push('server.listen')
  // The certificate, key and client CA are swapped in on reload; the listener itself is not.
  const tls = (t: CompiledConfig['server']['tls']) => (t === undefined ? undefined : [t.host, t.port, t.clientCertificates])
  if (!same(tls(a.server.tls), tls(b.server.tls))) changed.push('server.tls (listen, client_certificates.mode)')
  if (!same(a.server.trustProxy, b.server.trustProxy)) changed.push('server.trust_proxy')
  const listener = (l: CompiledConfig['limits']) => [l.headerTimeoutMs, l.requestTimeoutMs, l.keepAliveTimeoutMs, l.maxHeaderBytes, l.maxConnections, l.bodyBufferBytes, l.bodyBufferTotalBytes]
  if (!same(listener(a.limits), listener(b.limits))) changed.push('limits (listener bounds)')
  if (!same(a.admin, b.admin)) changed.push('admin.listen')
  if (!same(a.cache, b.cache)) changed.push('cache')
  return changed
}
