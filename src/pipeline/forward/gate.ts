import { GatewayError } from '../../errors.js'

/** Bounds of one upstream's connections (compiled from limits.upstream and the upstream's own settings). */
export interface UpstreamLimits {
  readonly maxConnections: number
  readonly maxQueue: number
  readonly queueTimeoutMs: number
}

/**
 * The connections one upstream may have in use, with a bounded queue in
 * front: a request waits for a free connection at most `queueTimeoutMs`,
 * behind at most `maxQueue` others; past either it is answered 503 with
 * Retry-After. No client, slow or not, can make other users of the upstream
 * wait without bound.
 */
export class UpstreamGate {
  private active = 0
  private readonly waiting: Array<{ grant: () => void; timer: NodeJS.Timeout | undefined }> = []

  constructor(readonly limits: UpstreamLimits) {}

  get inUse(): number {
    return this.active
  }

  get queued(): number {
    return this.waiting.length
  }

  /** The release function when a connection is free now (no promise on the common path); else undefined. */
  tryAcquire(): (() => void) | undefined {
    if (this.active >= this.limits.maxConnections) return undefined
    this.active++
    return this.releaser()
  }

  /** Resolves with the release function once a connection is free for this request. */
  acquire(): Promise<() => void> {
    const now = this.tryAcquire()
    if (now !== undefined) return Promise.resolve(now)
    if (this.waiting.length >= this.limits.maxQueue) return Promise.reject(saturated('the upstream is at its connection limit'))
    return new Promise((resolve, reject) => {
      const entry = {
        grant: () => {
          clearTimeout(entry.timer)
          this.active++
          resolve(this.releaser())
        },
        timer: undefined as NodeJS.Timeout | undefined,
      }
      entry.timer = setTimeout(() => {
        const i = this.waiting.indexOf(entry)
        if (i >= 0) this.waiting.splice(i, 1)
        reject(saturated('no upstream connection became free in time'))
      }, this.limits.queueTimeoutMs)
      this.waiting.push(entry)
    })
  }

  private releaser(): () => void {
    let released = false
    return () => {
      if (released) return
      released = true
      this.active--
      this.waiting.shift()?.grant()
    }
  }
}

function saturated(detail: string): GatewayError {
  return new GatewayError('upstream_saturated', detail, { retryAfter: 1 })
}
