import { ExpiringLru } from './lru.js'
import type { RedisStore } from './redis-store.js'
import type { CallObserver } from '../observe/calls.js'

/**
 * Rate-limit buckets: GCRA (the generic cell rate algorithm), one theoretical
 * arrival time (TAT) per key. A bucket of `burst` requests refills at one
 * request per `emissionUs`; taking n requests moves the TAT n emission
 * intervals later, and is allowed while the TAT stays within `burst`
 * intervals of now. One number per key, no window edges: at most `burst`
 * at once, and one request per interval on average.
 */

/** What a take got: how many of the wanted requests were granted, and the bucket after it. */
export interface Taken {
  /** 0 (refused) up to the number wanted. */
  readonly granted: number
  /** Requests still available at once after this take. */
  readonly remaining: number
  /** Microseconds until the bucket is full again (the TAT minus now). */
  readonly untilFullUs: number
  /** When refused: microseconds until one request would be granted. */
  readonly retryAfterUs: number
}

/** A place buckets live: this process, or Redis (shared by every replica). */
export interface BucketStore {
  /** Takes up to `want` requests from the bucket at `key`; undefined when the store could not answer. */
  take(key: string, emissionUs: number, burst: number, want: number, calls?: CallObserver): Promise<Taken | undefined> | Taken | undefined
}

/** The GCRA step, shared by both stores (the Lua script below is the same arithmetic). */
export function gcra(storedTat: number, nowUs: number, emissionUs: number, burst: number, want: number): Taken & { readonly tat: number } {
  const tat = Math.max(storedTat, nowUs)
  const room = Math.floor((burst * emissionUs - (tat - nowUs)) / emissionUs)
  const granted = Math.max(0, Math.min(want, room))
  const after = tat + granted * emissionUs
  return {
    granted,
    remaining: Math.max(0, room - granted),
    untilFullUs: after - nowUs,
    retryAfterUs: granted > 0 ? 0 : tat - nowUs - (burst - 1) * emissionUs,
    tat: after,
  }
}

/**
 * Buckets in this process: bounded (least recently used evicted first; a
 * bucket that is full again expires on its own, so eviction only forgets
 * buckets that hold nothing).
 */
export class LocalBuckets implements BucketStore {
  private readonly tats: ExpiringLru<number>

  constructor(
    maxEntries: number,
    private readonly nowUs: () => number = () => Date.now() * 1000,
  ) {
    this.tats = new ExpiringLru(maxEntries, () => this.nowUs() / 1000)
  }

  take(key: string, emissionUs: number, burst: number, want: number): Taken {
    const now = this.nowUs()
    const taken = gcra(this.tats.get(key) ?? 0, now, emissionUs, burst, want)
    if (taken.granted > 0) this.tats.set(key, taken.tat, taken.tat / 1000)
    return taken
  }

  get size(): number {
    return this.tats.size
  }
}

/**
 * The same step in Redis, atomic, one round trip (EVALSHA; ioredis loads
 * the script again on NOSCRIPT, after a restart or a SCRIPT FLUSH). Redis's
 * own clock decides (TIME), so replicas with skewed clocks agree. One key
 * per call: on a Cluster it lands on one slot whatever the prefix.
 */
const GCRA_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
if tat < now then tat = now end
local room = math.floor((burst * interval - (tat - now)) / interval)
local granted = math.max(0, math.min(want, room))
local after = tat + granted * interval
if granted > 0 then
  redis.call('SET', KEYS[1], string.format('%.0f', after), 'PX', math.ceil((after - now) / 1000) + 1)
end
local retry = 0
if granted == 0 then retry = tat - now - (burst - 1) * interval end
return { granted, math.max(0, room - granted), after - now, retry }
`

/** Gives back requests a take got but could not use (its write was not acknowledged by the replicas). */
const GIVE_BACK_LUA = `
local tat = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
if tat == 0 then return 0 end
local after = tat - tonumber(ARGV[1]) * tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if after <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.0f', after), 'PX', math.ceil((after - now) / 1000) + 1)
end
return 1
`

const SCRIPT = 'gatewayRateLimitTake'
const GIVE_BACK = 'gatewayRateLimitGiveBack'

/** After a take the replicas did not acknowledge, takes are not tried for this long (Redis counts as not answering). */
export const UNREPLICATED_PAUSE_MS = 500

export class RedisBuckets implements BucketStore {
  private unreplicatedUntil = 0

  constructor(
    private readonly store: RedisStore,
    private readonly prefix: string,
    /** Replicas that must have a decision before it counts (0: the master's word is enough). */
    private readonly replicas = 0,
  ) {
    store.defineScript(SCRIPT, GCRA_LUA, 1)
    store.defineScript(GIVE_BACK, GIVE_BACK_LUA, 1)
  }

  /**
   * With replicas to wait for, a take counts only once they have it. One they
   * did not acknowledge is not used (undefined: Redis did not answer), and
   * what it took is given back: a give-back that reaches a replica follows
   * the take in the replication stream, so a failover can lose the take, or
   * both, but never keep the give-back alone.
   */
  async take(key: string, emissionUs: number, burst: number, want: number, calls?: CallObserver): Promise<Taken | undefined> {
    const args = [this.prefix + key, emissionUs, burst, want]
    let answer: unknown
    if (this.replicas === 0) answer = await this.store.runScript(SCRIPT, args, calls)
    else {
      if (Date.now() < this.unreplicatedUntil) return undefined
      const ran = await this.store.runScriptReplicated<unknown>(SCRIPT, args, this.replicas, calls)
      if (ran === undefined) return undefined
      if (!ran.acknowledged) {
        const granted = Array.isArray(ran.value) ? Number(ran.value[0]) : 0
        if (granted > 0) void this.store.runScript(GIVE_BACK, [this.prefix + key, granted, emissionUs])
        // WAIT blocks the connection: while the replicas lag or are gone, do not queue more behind it.
        this.unreplicatedUntil = Date.now() + UNREPLICATED_PAUSE_MS
        return undefined
      }
      answer = ran.value
    }
    if (!Array.isArray(answer) || answer.length !== 4) return undefined
    const [granted, remaining, untilFullUs, retryAfterUs] = answer.map(Number) as [number, number, number, number]
    return { granted, remaining, untilFullUs, retryAfterUs }
  }
}
