import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import { occasionally } from '../log-throttle.js'
import { parseDenial, type Denial, type RevocationList } from './revocation-list.js'
import { connectRedis, getMany, isReady, scanKeys, type RedisClient, type RedisTopology } from './redis-client.js'

/** Pending denials kept while Redis is away, sent once it is back. */
const MAX_PENDING = 10_000
/** Denials read back from Redis at start and after a reconnection, at most. */
const MAX_SYNC = 1_000_000

/**
 * Revocations shared by every replica through Redis: each denial is stored
 * (`<prefix>revoked:…`, expiring with the last token it can deny) and
 * published (`<prefix>revocations`); every replica subscribes and applies
 * what it hears within milliseconds. A replica that starts, or whose
 * subscription was cut (it may have missed messages), reads every stored
 * denial back and drops its in-process token caches (`onGap`), so it never
 * serves a stale allow. Denials made while Redis is away apply locally at
 * once and are sent when it is back.
 */
export class RevocationBus {
  private readonly commands: RedisClient
  private readonly subscriber: RedisClient
  private readonly channel: string
  private readonly pending: Denial[] = []
  private connectedOnce = false
  private readonly warned = new Map<string, () => void>()

  constructor(
    private readonly topology: RedisTopology,
    private readonly prefix: string,
    private readonly list: () => RevocationList,
    private readonly onGap: () => void,
    private readonly logger?: Logger,
  ) {
    this.commands = connectRedis(topology, { commandTimeoutMs: 2000 })
    this.subscriber = connectRedis(topology, { queueWhileDisconnected: true })
    this.channel = `${prefix}revocations`
    for (const client of [this.commands, this.subscriber]) client.on('error', (err: Error) => logger?.debug({ err: { message: err.message } }, 'redis error (revocations)'))
    this.subscriber.on('message', (_channel: string, text: string) => this.heard(text))
    this.subscriber.on('ready', () => void this.subscribed())
    this.commands.on('ready', () => void this.flush())
  }

  /** Stores and publishes a denial made in this process. */
  publish(denial: Denial): void {
    if (!isReady(this.commands)) {
      if (this.pending.length < MAX_PENDING) this.pending.push(denial)
      this.warn('redis unavailable: revocations apply here and are shared once it is back')
      return
    }
    void this.send(denial)
  }

  private async send(denial: Denial): Promise<void> {
    const text = JSON.stringify(denial)
    try {
      await this.commands.set(this.key(denial), text, 'EXAT', Math.ceil(denial.until) + 300)
      await this.commands.publish(this.channel, text)
    } catch (err) {
      if (this.pending.length < MAX_PENDING) this.pending.push(denial)
      this.warn('a revocation could not be shared yet; it is retried when Redis is back', { cause: (err as Error).message })
    }
  }

  /** A warning at most once a minute per message (Redis being away is not news every request). */
  private warn(message: string, fields: Record<string, unknown> = {}): void {
    let report = this.warned.get(message)
    if (report === undefined) this.warned.set(message, (report = occasionally(60_000, (count) => this.logger?.warn({ ...fields, count }, message))))
    report()
  }

  private async flush(): Promise<void> {
    const waiting = this.pending.splice(0)
    for (const d of waiting) await this.send(d)
  }

  private key(d: Denial): string {
    return `${this.prefix}revoked:${d.kind}:${createHash('sha256').update(`${d.issuer}\u0000${d.id}`).digest('base64url')}`
  }

  private heard(text: string): void {
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch {
      return
    }
    const denial = parseDenial(value)
    if (denial) this.list().apply(denial, true)
  }

  /** Subscribed (again): after a cut, what was missed is read back and the token caches dropped. */
  private async subscribed(): Promise<void> {
    try {
      await this.subscriber.subscribe(this.channel)
    } catch {
      return // the next ready event tries again
    }
    const gap = this.connectedOnce
    this.connectedOnce = true
    if (gap) {
      this.onGap()
      this.logger?.warn('revocation messages may have been missed while Redis was away: token caches dropped, stored revocations read back')
    }
    await this.sync()
  }

  /** Reads every stored denial (SCAN on every master, then GET in batches) into the list. */
  async sync(): Promise<number> {
    const reader = connectRedis(this.topology, { queueWhileDisconnected: true })
    reader.on('error', () => undefined)
    let read = 0
    try {
      for await (const keys of scanKeys(reader, `${this.prefix}revoked:*`)) {
        for (const text of await getMany(reader, keys)) {
          if (text === null) continue
          this.heard(text)
          if (++read >= MAX_SYNC) return read
        }
      }
    } catch (err) {
      this.warn('stored revocations could not be read', { cause: (err as Error).message })
    } finally {
      reader.disconnect()
    }
    return read
  }

  async close(): Promise<void> {
    this.commands.disconnect()
    this.subscriber.disconnect()
  }
}
