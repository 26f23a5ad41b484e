import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { ExpiringLru } from '../../src/cache/lru.js'
import { IntrospectionMemory, introspectionCodec, type IntrospectionRecord } from '../../src/pipeline/authn/introspection.js'

/** The obvious model: an array in use order, oldest first. */
class ModelLru {
  entries: Array<[string, number]> = []
  constructor(readonly max: number) {}
  get(key: string): number | undefined {
    const i = this.entries.findIndex(([k]) => k === key)
    if (i < 0) return undefined
    const [entry] = this.entries.splice(i, 1)
    this.entries.push(entry!)
    return entry![1]
  }
  set(key: string, value: number): void {
    this.entries = this.entries.filter(([k]) => k !== key)
    this.entries.push([key, value])
    if (this.entries.length > this.max) this.entries.shift()
  }
  delete(key: string): void {
    this.entries = this.entries.filter(([k]) => k !== key)
  }
}

const op = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), key: fc.integer({ min: 0, max: 30 }), value: fc.integer() }),
  fc.record({ kind: fc.constant('get' as const), key: fc.integer({ min: 0, max: 30 }) }),
  fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 30 }) }),
  fc.record({ kind: fc.constant('clear' as const) }),
)

describe('ExpiringLru', () => {
  it('evicts exactly what a least-recently-used model evicts, through any mix of sets, gets, deletes and clears', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(op, { maxLength: 300 }), (max, ops) => {
        const lru = new ExpiringLru<number>(max, () => 0)
        const model = new ModelLru(max)
        for (const o of ops) {
          const key = 'key' in o ? `k${o.key}` : ''
          if (o.kind === 'set') {
            lru.set(key, o.value, 1)
            model.set(key, o.value)
          } else if (o.kind === 'get') {
            expect(lru.get(key)).toBe(model.get(key))
          } else if (o.kind === 'delete') {
            lru.delete(key)
            model.delete(key)
          } else {
            lru.clear()
            model.entries = []
          }
          expect(lru.size).toBe(model.entries.length)
        }
        for (const [k, v] of model.entries) expect(lru.get(k)).toBe(v)
      }),
      { numRuns: 500 },
    )
  })

  it('forgets an entry at its expiry, and never stores one already expired', () => {
    let now = 1_000
    const lru = new ExpiringLru<string>(10, () => now)
    lru.set('a', 'x', 1_500)
    lru.set('b', 'y', 1_000)
    expect(lru.get('a')).toBe('x')
    expect(lru.get('b')).toBeUndefined()
    now = 1_500
    expect(lru.get('a')).toBeUndefined()
    expect(lru.size).toBe(0)
  })
})

describe('IntrospectionMemory', () => {
  it('holds each record until its own expiry; an inactive result (one shared, frozen object) becomes a record per key', () => {
    let now = 1_000
    const memory = new IntrospectionMemory(10, () => now)
    const inactive = Object.freeze({ active: false }) as IntrospectionRecord
    memory.set('a', inactive, 1_200)
    memory.set('b', inactive, 1_500)
    const active: IntrospectionRecord = { active: true, sub: 'u1' }
    memory.set('c', active, 1_300)
    expect(memory.get('a')).toMatchObject({ active: false })
    expect(memory.get('c')).toBe(active)
    now = 1_200
    expect(memory.get('a')).toBeUndefined()
    expect(memory.get('b')).toMatchObject({ active: false })
    now = 1_300
    expect(memory.get('c')).toBeUndefined()
    expect(memory.get('b')).toMatchObject({ active: false })
    now = 1_500
    expect(memory.get('b')).toBeUndefined()
    expect(memory.size).toBe(0)
  })

  it('never encodes its expiry (nor the principal) into the shared tier', () => {
    const memory = new IntrospectionMemory(10, () => 0)
    const record: IntrospectionRecord = { active: true, sub: 'u1' }
    memory.set('a', record, 5_000)
    expect(introspectionCodec.encode(record)).toBe('v3:{"active":true,"sub":"u1"}')
  })
})
