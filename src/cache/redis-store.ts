import type { Logger } from 'pino'
import { closeRedis, connectRedis, type RedisClient, type RedisTopology } from './redis-client.js'

/** The tier shared by every gateway replica. Failures are misses, never errors. */
export interface SharedStore {
  get(key: string): Promise<string | undefined>
  set(key: string, value: string, ttlMs: number): Promise<void>
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

  constructor(private readonly options: RedisStoreOptions) {
    this.client = connectRedis(options.topology, { commandTimeoutMs: options.timeoutMs })
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
  private async command<T>(run: () => Promise<T>): Promise<T | undefined> {
    if (!this.up) return undefined
    try {
      const value = await run()
      this.failures = 0
      return value
    } catch (err) {
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

  async get(key: string): Promise<string | undefined> {
    return (await this.command(() => this.client.get(key))) ?? undefined
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    if (ttlMs < 1) return
    // A result that is not shared is only a later miss.
    await this.command(() => this.client.set(key, value, 'PX', Math.ceil(ttlMs)))
  }

  /** Closes the connection; never waits on a Redis that is down (a drain must not hang on it). */
  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.probe)
    this.client.removeAllListeners('close')
    await closeRedis(this.client)
  }
}
