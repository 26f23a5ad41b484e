import { describe, expect, it } from 'vitest'
import { GatewayError } from '../../src/errors.js'
import { extractBearer, type CredentialSources } from '../../src/pipeline/extract/bearer.js'

function code(sources: Partial<CredentialSources>): string {
  try {
    extractBearer({ rawHeaders: [], query: '', formBody: undefined, ...sources })
  } catch (err) {
    return (err as GatewayError).code
  }
  return 'ok'
}

describe('extractBearer', () => {
  it('takes a b64token from the Authorization header, any scheme case', () => {
    expect(extractBearer({ rawHeaders: ['Authorization', 'Bearer abc.DEF-_~+/=='], query: '', formBody: undefined })).toBe('abc.DEF-_~+/==')
    expect(extractBearer({ rawHeaders: ['authorization', 'BEARER t'], query: '?a=1', formBody: undefined })).toBe('t')
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
    expect(code({ rawHeaders: ['Authorization', 'Bearer a'], formBody: Buffer.from('x=1&access_token=b') })).toBe('token_duplicated')
    expect(code({ query: '?%61ccess_token=b' })).toBe('token_location_unsupported')
    expect(code({ rawHeaders: ['Authorization', 'Bearer a'], query: '?my_access_token=b&access=1' })).toBe('ok')
  })
})
