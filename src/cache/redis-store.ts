import { Redis } from 'ioredis'
import type { Logger } from 'pino'

/** The tier shared by every gateway replica. Failures are misses, never errors. */
export interface SharedStore {
  get(key: string): Promise<string | undefined>
  set(key: string, value: string, ttlMs: number): Promise<void>
  /** True while the store answers. */
  readonly up: boolean
  close(): Promise<void>
}

export interface RedisStoreOptions {
  readonly url: string
  /** Longest wait for one command before the gateway goes on without Redis. */
  readonly timeoutMs: number
  readonly logger?: Logger | undefined
  readonly onStatus?: (up: boolean) => void
}

/** Reconnection backoff: 50 ms, doubling, at most 2 s between attempts, forever. */
export function reconnectDelay(attempt: number): number {
  return Math.min(50 * 2 ** Math.min(attempt, 6), 2000)
}

/**
 * Redis through ioredis (the URL may name a standalone server; Sentinel or
 * Cluster deployments get their own SharedStore over ioredis's clients).
 * Commands never queue while disconnected and never wait longer than the
 * timeout: a slow or dead Redis degrades to the in-process tier and direct
 * introspection, and the client reconnects on its own.
 */
export class RedisStore implements SharedStore {
  private readonly client: Redis
  private lastUp = false

  constructor(private readonly options: RedisStoreOptions) {
    this.client = new Redis(options.url, {
      commandTimeout: options.timeoutMs,
      connectTimeout: Math.max(options.timeoutMs * 10, 1000),
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: reconnectDelay,
      lazyConnect: false,
    })
    this.client.on('ready', () => this.status(true))
    this.client.on('close', () => this.status(false))
    // Without a listener, ioredis errors would crash the process.
    this.client.on('error', (err: Error) => {
      options.logger?.debug({ err: { message: err.message } }, 'redis error')
    })
  }

  private status(up: boolean): void {
    if (up === this.lastUp) return
    this.lastUp = up
    if (up) this.options.logger?.info('redis connected')
    else this.options.logger?.warn('redis unavailable: using the in-process cache and direct introspection')
    this.options.onStatus?.(up)
  }

  get up(): boolean {
    return this.client.status === 'ready'
  }

  async get(key: string): Promise<string | undefined> {
    if (!this.up) return undefined
    try {
      return (await this.client.get(key)) ?? undefined
    } catch {
      return undefined
    }
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    if (!this.up || ttlMs < 1) return
    try {
      await this.client.set(key, value, 'PX', Math.ceil(ttlMs))
    } catch {
      // A result that is not shared is only a later miss.
    }
  }

  /** Closes the connection; never waits on a Redis that is down (a drain must not hang on it). */
  async close(): Promise<void> {
    this.client.removeAllListeners('close')
    if (this.client.status !== 'ready') {
      this.client.disconnect()
      return
    }
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([this.client.quit(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('quit timed out')), 1000)))])
    } catch {
      this.client.disconnect()
    } finally {
      clearTimeout(timer)
    }
  }
}
