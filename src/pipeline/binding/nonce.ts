import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'

/**
 * Server-provided DPoP nonces (RFC 9449 §8, §9), stateless: a nonce is the
 * time slot it was made in and an HMAC of that slot under a secret every
 * replica shares, so any replica accepts what another handed out and none
 * stores anything. A nonce is good for the slot it was made in and the next
 * one; a proof with an older one gets `use_dpop_nonce` and a fresh nonce.
 */
export class NonceIssuer {
  private readonly key: Buffer
  /** The last nonce made, and its slot: made once per slot. */
  private made: { slot: number; nonce: string } | undefined

  /**
   * @param secret shared by every replica (dpop.nonce.secret); without it a
   *   random one, which only a single process can use
   * @param slotSeconds how often nonces change
   */
  constructor(
    secret: string | undefined,
    readonly slotSeconds: number,
  ) {
    this.key = secret === undefined ? randomBytes(32) : createHmac('sha256', 'dpop-nonce').update(secret).digest()
  }

  private slotOf(nowSeconds: number): number {
    return Math.floor(nowSeconds / this.slotSeconds)
  }

  private mac(slot: number): Buffer {
    return createHmac('sha256', this.key).update(String(slot)).digest().subarray(0, 18)
  }

  /** The nonce of the current slot. */
  current(nowSeconds: number): string {
    const slot = this.slotOf(nowSeconds)
    if (this.made?.slot !== slot) this.made = { slot, nonce: `${slot.toString(36)}.${this.mac(slot).toString('base64url')}` }
    return this.made.nonce
  }

  /** `fresh`: made in this slot; `stale`: in the previous one (still accepted; a new one is offered); else `invalid`. */
  check(nonce: string, nowSeconds: number): 'fresh' | 'stale' | 'invalid' {
    const dot = nonce.indexOf('.')
    if (dot < 1 || dot > 12 || nonce.length > 64) return 'invalid'
    const slot = parseInt(nonce.slice(0, dot), 36)
    if (!Number.isSafeInteger(slot) || slot.toString(36) !== nonce.slice(0, dot)) return 'invalid'
    const now = this.slotOf(nowSeconds)
    if (slot !== now && slot !== now - 1) return 'invalid'
    const given = Buffer.from(nonce.slice(dot + 1), 'base64url')
    const expected = this.mac(slot)
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'invalid'
    return slot === now ? 'fresh' : 'stale'
  }
}
