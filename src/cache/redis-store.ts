import type { Logger } from 'pino'
import { closeRedis, connectRedis, type RedisClient, type RedisTopology } from './redis-client.js'
import { callStarted, type CallObserver } from '../observe/calls.js'

/** The tier shared by every gateway replica. Failures are misses, never errors. */
export interface SharedStore {
  /** `calls` observes the command (a request's trace). */
  get(key: string, calls?: CallObserver): Promise<string | undefined>
  set(key: string, value: string, ttlMs: number, calls?: CallObserver): Promise<void>
  /** True while the store answers. */
  readonly up: boolean
  close(): Promise<void>
}

export interface RedisStoreOptions {
  readonly topology: RedisTopology
  /** Longest wait for one command before the gateway goes on without Redis. */
  readonly timeoutMs: number
  readonly logger?: Logger | undefined
  readonly onStatus?: (up: boolean) => void
}

/** Consecutive failed or timed-out commands that open the circuit. */
export const BREAKER_THRESHOLD = 3
/** While open, Redis is probed (PING) this often. */
export const BREAKER_PROBE_MS = 1000

/**
 * Redis through ioredis, on any topology (redis-client.ts). Commands never queue while disconnected and never wait longer than the
 * timeout: a slow or dead Redis degrades to the in-process tier and direct
 * introspection, and the client reconnects on its own.
 *
 * A hung Redis (the connection open, nothing answered) is seen too: after
 * BREAKER_THRESHOLD commands in a row fail or time out, the circuit opens:
 * Redis counts as down (metrics, readiness), commands are skipped at once,
 * and a PING probes it every BREAKER_PROBE_MS until one is answered.
 */
export class RedisStore implements SharedStore {
  private readonly client: RedisClient
  private lastUp = false
  private failures = 0
  private open = false
  private probe: NodeJS.Timeout | undefined

  /** Where Redis is, for traces (never its credentials). */
  private readonly where: string

  constructor(private readonly options: RedisStoreOptions) {
    const t = options.topology
    this.where = t.kind === 'standalone' ? (URL.canParse(t.url) ? new URL(t.url).host : 'redis') : t.kind === 'sentinel' ? `sentinel:${t.masterName}` : 'cluster'
    // Concurrent requests' commands leave in one write: one syscall and one round trip for many.
    this.client = connectRedis(options.topology, { commandTimeoutMs: options.timeoutMs, autoPipelining: true })
    this.client.on('ready', () => this.status(this.up))
    this.client.on('close', () => this.status(false))
    // Without a listener, ioredis errors would crash the process.
    this.client.on('error', (err: Error) => {
      options.logger?.debug({ err: { message: err.message } }, 'redis error')
    })
  }

  private status(up: boolean, why?: string): void {
    if (up === this.lastUp) return
    this.lastUp = up
    if (up) this.options.logger?.info('redis connected')
    else this.options.logger?.warn({ cause: why ?? 'connection lost' }, 'redis unavailable: using the in-process cache and direct introspection')
    this.options.onStatus?.(up)
  }

  get up(): boolean {
    return this.client.status === 'ready' && !this.open
  }

  /** Runs a command unless the circuit is open; failures and timeouts count towards opening it. */
  private async command<T>(name: string, run: () => Promise<T>, calls?: CallObserver): Promise<T | undefined> {
    if (!this.up) return undefined
    const call = callStarted('redis', name, this.where, calls)
    try {
      const value = await run()
      this.failures = 0
      call?.end(undefined)
      return value
    } catch (err) {
      call?.end(undefined, err)
      if (++this.failures >= BREAKER_THRESHOLD && !this.open) this.trip((err as Error)?.message)
      return undefined
    }
  }

  private trip(why: string | undefined): void {
    this.open = true
    this.status(false, `${BREAKER_THRESHOLD} commands in a row failed or timed out (${why ?? 'no answer'})`)
    const check = () => {
      this.probe = undefined
      this.client.ping().then(
        () => {
          this.open = false
          this.failures = 0
          this.status(this.up)
        },
        () => {
          if (this.open && !this.closed) this.probe = setTimeout(check, BREAKER_PROBE_MS).unref()
        },
      )
    }
    this.probe = setTimeout(check, BREAKER_PROBE_MS).unref()
  }

  private closed = false

  /** Defines a Lua script on the connection, run by name (EVALSHA; loaded again on NOSCRIPT). */
  defineScript(name: string, lua: string, numberOfKeys: number): void {
    if (!(name in this.client)) this.client.defineCommand(name, { lua, numberOfKeys })
  }

  /** Runs a script defined by defineScript: its answer, or undefined when Redis is away or the call failed (a failure counts towards the breaker). */
  async runScript<T>(name: string, keysAndArgs: readonly (string | number)[], calls?: CallObserver): Promise<T | undefined> {
    if (!(name in this.client)) return undefined
    return this.command('EVALSHA', () => (this.client as unknown as Record<string, (...a: (string | number)[]) => Promise<T>>)[name]!(...keysAndArgs), calls)
  }

  /**
   * Runs a script, then waits (WAIT, same round trip) until `replicas`
   * replicas have its writes, at most a quarter of the command timeout: whether they
   * did is `acknowledged`. Undefined when Redis is away or the call failed.
   */
  async runScriptReplicated<T>(name: string, keysAndArgs: readonly (string | number)[], replicas: number, calls?: CallObserver): Promise<{ value: T; acknowledged: boolean } | undefined> {
    if (!(name in this.client)) return undefined
    return this.command('EVALSHA+WAIT', async () => {
      const pipeline = this.client.pipeline()
      ;(pipeline as unknown as Record<string, (...a: (string | number)[]) => unknown>)[name]!(...keysAndArgs)
      pipeline.wait(replicas, Math.max(1, Math.floor(this.options.timeoutMs / 4)))
      const [ran, waited] = (await pipeline.exec()) ?? []
      if (!ran || ran[0]) throw ran?.[0] ?? new Error('no answer')
      // The script ran; a WAIT that failed or timed out is a write not acknowledged.
      return { value: ran[1] as T, acknowledged: !waited?.[0] && Number(waited?.[1]) >= replicas }
    }, calls)
  }

  async get(key: string, calls?: CallObserver): Promise<string | undefined> {
    return (await this.command('GET', () => this.client.get(key), calls)) ?? undefined
  }

  async set(key: string, value: string, ttlMs: number, calls?: CallObserver): Promise<void> {
    if (ttlMs < 1) return
    // A result that is not shared is only a later miss.
    await this.command('SET', () => this.client.set(key, value, 'PX', Math.ceil(ttlMs)), calls)
  }

  /** SET NX PX: true when the key was new, false when it was there; undefined when Redis did not answer. */
  async setIfAbsent(key: string, ttlMs: number, calls?: CallObserver): Promise<boolean | undefined> {
    const answer = await this.command('SET NX', () => this.client.set(key, '1', 'PX', Math.max(1, Math.ceil(ttlMs)), 'NX'), calls)
    return answer === undefined ? undefined : answer === 'OK'
  }

  /** Closes the connection; never waits on a Redis that is down (a drain must not hang on it). */
  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.probe)
    this.client.removeAllListeners('close')
    await closeRedis(this.client)
  }
}
