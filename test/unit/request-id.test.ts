import { describe, expect, it } from 'vitest'
import { newRequestId } from '../../src/http/request-id.js'

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe('newRequestId', () => {
  it('makes distinct version 4 UUIDs, across many refills of its random pool', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 100_000; i++) {
      const id = newRequestId()
      expect(id).toMatch(UUID_V4)
      seen.add(id)
    }
    expect(seen.size).toBe(100_000)
  })

  it('draws every random digit from the whole hex range', () => {
    const digits = Array.from({ length: 36 }, () => new Set<string>())
    for (let i = 0; i < 2_000; i++) [...newRequestId()].forEach((c, at) => digits[at]!.add(c))
    for (const at of [0, 7, 9, 12, 15, 17, 20, 24, 35]) expect(digits[at]!.size).toBe(16)
    expect([...digits[14]!]).toEqual(['4'])
    expect([...digits[19]!].sort()).toEqual(['8', '9', 'a', 'b'])
  })
})
