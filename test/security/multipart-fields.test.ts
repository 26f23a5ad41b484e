import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFixture, standardConfig, type Fixture } from '../helpers/fixture.js'
import { bearer, send } from '../helpers/servers.js'
import { MultipartScanner } from '../../src/pipeline/body/multipart.js'

// PHP, Rails and Laravel read fields of multipart/form-data bodies as
// request parameters: a second token or a method override there is the
// same attack as in a urlencoded form, so it is refused the same way,
// however the field name is spelled and wherever the body is cut into chunks.

let f: Fixture
let good: string
beforeAll(async () => {
  f = await startFixture((jwks, up) => standardConfig(jwks, up, 'limits: { body_buffer_bytes: 1024 }\n'))
  good = await f.token({ scope: 'orders:read orders:write' })
})
afterAll(() => f.close())

const B = 'XyZ-boundary-42'
function multipart(fields: Array<[string, string]>, filler = 0): string {
  let body = ''
  if (filler) body += `--${B}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\nContent-Type: application/octet-stream\r\n\r\n${'f'.repeat(filler)}\r\n`
  for (const [disposition, value] of fields) body += `--${B}\r\nContent-Disposition: ${disposition}\r\n\r\n${value}\r\n`
  return body + `--${B}--\r\n`
}
const post = (body: string) =>
  send(f.gw.url, { method: 'POST', path: '/orders', headers: [bearer(good), ['Content-Type', `multipart/form-data; boundary=${B}`]], body })

describe('multipart form fields', () => {
  for (const disposition of [
    'form-data; name="access_token"',
    'form-data; name=access_token',
    'form-data; NAME="ACCESS_TOKEN"',
    'form-data; name="access.token"',
    'form-data; name="access_token[]"',
    "form-data; name*=utf-8''access%5Ftoken",
  ]) {
    for (const filler of [0, 200_000]) {
      it(`${disposition} ${filler ? 'after a large part (streamed)' : '(received whole)'} is refused`, async () => {
        const res = await post(multipart([['form-data; name="item"', '1'], [disposition, 'other-token']], filler))
        expect(res.status).toBe(400)
        expect((await f.gw.requestLog(res.headers['x-request-id'])).reason).toBe('token_duplicated')
        expect(f.upstream.received.some((r) => r.body.includes('other-token'))).toBe(false)
      })
    }
  }

  it('_method in a multipart body is refused where the method matters', async () => {
    const res = await post(multipart([['form-data; name="_method"', 'DELETE']]))
    expect(res.status).toBe(400)
    expect((await f.gw.requestLog(res.headers['x-request-id'])).reason).toBe('method_override_refused')
  })

  it('ordinary multipart bodies pass whole, even with look-alike names and content', async () => {
    const body = multipart([['form-data; name="my_access_token_note"', 'access_token=x'], ['form-data; name="file"; filename="access_token"', 'name="access_token"']], 50_000)
    const res = await post(body)
    expect(res.status).toBe(200)
    expect(res.json<{ bodyLength: number }>().bodyLength).toBe(Buffer.byteLength(body))
  })

  it('the scanner finds a field however the body is cut into chunks', () => {
    const body = Buffer.from(multipart([['form-data; name="a"', 'x'], ['form-data; name="access_token"', 'y']]))
    for (let size = 1; size <= 40; size++) {
      const found: string[] = []
      const scanner = new MultipartScanner(B, ['access_token'], (r) => found.push(r))
      for (let i = 0; i < body.length; i += size) scanner.push(body.subarray(i, i + size))
      expect(found, `chunks of ${size}`).toEqual(['access_token'])
    }
  })
})
