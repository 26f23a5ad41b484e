import { describe, expect, it } from 'vitest'
import { GatewayError } from '../../src/errors.js'
import { BearerToken, extractBearer, hasAccessTokenParam, type CredentialSources } from '../../src/pipeline/extract/bearer.js'

function code(sources: Partial<CredentialSources>): string {
  try {
    extractBearer({ rawHeaders: [], query: '', ...sources })
  } catch (err) {
    return (err as GatewayError).code
  }
  return 'ok'
}

describe('extractBearer', () => {
  it('takes a b64token from the Authorization header, any scheme case', () => {
    expect(extractBearer({ rawHeaders: ['Authorization', 'Bearer abc.DEF-_~+/=='], query: '' }).value).toBe('abc.DEF-_~+/==')
    expect(extractBearer({ rawHeaders: ['authorization', 'BEARER t'], query: '?a=1' }).value).toBe('t')
  })

  it('classifies what is wrong', () => {
    expect(code({})).toBe('token_missing')
    expect(code({ rawHeaders: ['Authorization', 'Basic x'] })).toBe('token_missing')
    expect(code({ rawHeaders: ['Authorization', 'Bearer'] })).toBe('authorization_malformed')
    expect(code({ rawHeaders: ['Authorization', 'Bearer a b'] })).toBe('authorization_malformed')
    expect(code({ rawHeaders: ['Authorization', 'Bearerx'] })).toBe('token_missing') // another scheme
    expect(code({ rawHeaders: ['Authorization', 'Bearer ' + 'a'.repeat(20_000)] })).toBe('authorization_malformed')
    expect(code({ rawHeaders: ['Authorization', 'Bearer a', 'authorization', 'Bearer a'] })).toBe('token_duplicated')
    expect(code({ rawHeaders: ['Authorization', 'Bearer a'], query: '?access_token=b' })).toBe('token_duplicated')
    expect(code({ query: '?%61ccess_token=b' })).toBe('token_location_unsupported')
    expect(code({ rawHeaders: ['Authorization', 'Bearer a'], query: '?my_access_token=b&access=1' })).toBe('ok')
  })
})

describe('hasAccessTokenParam (query strings and form bodies)', () => {
  it('finds every name a framework reads as access_token, and only those', () => {
    for (const text of ['x=1&access_token=b', 'access.token=b', 'access%20token=b', 'access+token=b', 'access[token=b', 'access_token[]=b', 'access_token[0]=b', 'ACCESS_TOKEN=b', '%61ccess_token=b', '%20access_token=b', 'access_token.x=b']) {
      expect(hasAccessTokenParam(text), text).toBe(true)
    }
    for (const text of ['my_access_token=b', 'access=1&token=2', 'accesstoken=b', 'access__token=b', 'note=access_token']) {
      expect(hasAccessTokenParam(text), text).toBe(false)
    }
  })
})

describe('extractBearer on a connection', () => {
  const on = (connection: object, header: string, more: Partial<CredentialSources> = {}) =>
    extractBearer({ rawHeaders: ['Authorization', header], query: '', connection, ...more })

  it('hands back the same token for the very same header on the same connection only', () => {
    const a = {}
    const b = {}
    const first = on(a, 'Bearer t1')
    expect(on(a, 'Bearer t1')).toBe(first)
    expect(on(b, 'Bearer t1')).not.toBe(first) // another connection parses its own
    const second = on(a, 'Bearer t2')
    expect(second.value).toBe('t2')
    expect(on(a, 'bearer t2')).not.toBe(second) // another header string is parsed again
    expect(on(a, 'bearer t2').value).toBe('t2')
  })

  it('still refuses a second token or a malformed header next to a remembered one', () => {
    const a = {}
    on(a, 'Bearer t1')
    expect(() => on(a, 'Bearer t1', { query: '?access_token=t2' })).toThrow(expect.objectContaining({ code: 'token_duplicated' }))
    expect(() => on(a, 'Bearer t1', { rawHeaders: ['Authorization', 'Bearer t1', 'Authorization', 'Bearer t1'] })).toThrow(
      expect.objectContaining({ code: 'token_duplicated' }),
    )
    expect(() => on(a, 'Bearer t1 x')).toThrow(expect.objectContaining({ code: 'authorization_malformed' }))
    expect(on(a, 'Bearer t1').value).toBe('t1')
  })

  it('does not remember an over-long header', () => {
    const a = {}
    const long = 'Bearer ' + 'a'.repeat(5000)
    expect(on(a, long)).not.toBe(on(a, long))
  })
})

describe('BearerToken', () => {
  it('derives each cache key once, separately for each cache', () => {
    const calls: string[] = []
    const keyer = (name: string) => ({
      cacheKey: (token: string) => {
        calls.push(name)
        return `${name}:${token}`
      },
    })
    const one = keyer('one')
    const two = keyer('two')
    const token = new BearerToken('t')
    expect(token.keyFor(one)).toBe('one:t')
    expect(token.keyFor(two)).toBe('two:t')
    expect(token.keyFor(one)).toBe('one:t')
    expect(token.keyFor(two)).toBe('two:t')
    expect(calls).toEqual(['one', 'two'])
  })
})
