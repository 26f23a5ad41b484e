import { describe, expect, it } from 'vitest'
import { principalFromIntrospection, type IntrospectingIssuer, type IntrospectionRecord } from '../../src/pipeline/authn/introspection.js'

const issuer = (): IntrospectingIssuer =>
  ({
    id: 'corp',
    issuer: 'https://as.example',
    audiences: ['api'],
    clockSkewSeconds: 0,
    introspection: { settings: { requireAudience: true } },
  }) as unknown as IntrospectingIssuer

const record: IntrospectionRecord = { active: true, iss: 'https://as.example', aud: ['api'], sub: 'u1', client_id: 'c1', scope: 'read write', exp: 2_000 }

describe('principalFromIntrospection', () => {
  it('builds the principal of a record once per issuer object', () => {
    const corp = issuer()
    const first = principalFromIntrospection(corp, record, 1_000)
    expect(first).toMatchObject({ issuerId: 'corp', subject: 'u1', clientId: 'c1', expiresAt: 2_000 })
    expect([...first.scopes]).toEqual(['read', 'write'])
    expect(principalFromIntrospection(corp, record, 1_500)).toBe(first)
    // A reloaded configuration makes new issuer objects: nothing carries over.
    const reloaded = { ...issuer(), id: 'corp-v2' }
    expect(principalFromIntrospection(reloaded, record, 1_500)).toMatchObject({ issuerId: 'corp-v2' })
  })

  it('keeps nothing on a record just loaded, until it is found again', () => {
    const corp = issuer()
    const loaded: IntrospectionRecord = { ...record, principal: undefined, principalFor: undefined }
    const first = principalFromIntrospection(corp, loaded, 1_000, false)
    expect(first).toMatchObject({ issuerId: 'corp', subject: 'u1' })
    expect(loaded.principal).toBeUndefined()
    const second = principalFromIntrospection(corp, loaded, 1_000)
    expect(second).not.toBe(first)
    expect(second).toEqual(first)
    expect(loaded.principal).toBe(second)
    expect(principalFromIntrospection(corp, loaded, 1_000)).toBe(second)
  })

  it('still decides on every call once the principal is known', () => {
    const corp = issuer()
    principalFromIntrospection(corp, record, 1_000)
    expect(() => principalFromIntrospection(corp, record, 2_000)).toThrow(expect.objectContaining({ code: 'token_expired' }))
    expect(() => principalFromIntrospection({ ...corp, audiences: ['other'] }, record, 1_000)).toThrow(expect.objectContaining({ code: 'audience_invalid' }))
    expect(() => principalFromIntrospection({ ...corp, issuer: 'https://elsewhere.example' }, record, 1_000)).toThrow(expect.objectContaining({ code: 'issuer_untrusted' }))
  })
})
