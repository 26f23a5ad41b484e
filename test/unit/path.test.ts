import { describe, expect, it } from 'vitest'
import { GatewayError } from '../../src/errors.js'
import { normalizeTarget } from '../../src/pipeline/normalize/path.js'

function path(raw: string): string {
  return normalizeTarget(raw).path
}

function rejected(raw: string): string {
  try {
    normalizeTarget(raw)
  } catch (err) {
    expect(err).toBeInstanceOf(GatewayError)
    return (err as GatewayError).code
  }
  throw new Error(`${raw} was accepted`)
}

describe('normalizeTarget', () => {
  it('keeps simple paths as they are and splits the query off', () => {
    expect(normalizeTarget('/a/b-c_d~e?x=1&y=/..')).toEqual({ path: '/a/b-c_d~e', query: '?x=1&y=/..' })
    expect(normalizeTarget('/')).toEqual({ path: '/', query: '' })
    expect(normalizeTarget('/?')).toEqual({ path: '/', query: '?' })
  })

  it('removes dot segments per RFC 3986 §5.2.4, never above the root', () => {
    expect(path('/a/./b/../c')).toBe('/a/c')
    expect(path('/a/b/..')).toBe('/a/')
    expect(path('/a/b/.')).toBe('/a/b/')
    expect(path('/../../a')).toBe('/a')
    expect(path('/..')).toBe('/')
    expect(path('/a/...')).toBe('/a/...')
    expect(path('/a/..b/c..')).toBe('/a/..b/c..')
  })

  it('treats percent-encoded dots as dots', () => {
    expect(path('/a/%2e%2E/b')).toBe('/b')
    expect(path('/a/%2e/b')).toBe('/a/b')
  })

  it('merges duplicate slashes and keeps a trailing slash', () => {
    expect(path('//a///b//')).toBe('/a/b/')
  })

  it('decodes unreserved characters and upper-cases the other escapes', () => {
    expect(path('/%41%7a%30%2D%5f%7E')).toBe('/Az0-_~')
    expect(path('/a%2bb%c3%a9')).toBe('/a%2Bb%C3%A9')
  })

  it('percent-encodes characters that are not pchar', () => {
    expect(path('/a"b<c>|{}^`')).toBe('/a%22b%3Cc%3E%7C%7B%7D%5E%60')
  })

  it('refuses what backends could read differently', () => {
    for (const raw of ['/a%2fb', '/a%2Fb', '/a%5cb', '/a\\b', '/a%00', '/a;b', '/a%3bb', '/a%3Bb', '/a#b', '/a%0ab', '/a%7f', '/%c0%ae', '/%ff', '/%C3']) {
      expect(rejected(raw), raw).toBe('path_invalid')
    }
  })

  it('refuses malformed escapes', () => {
    for (const raw of ['/%', '/%4', '/%g0', '/a%2', '/%%30']) expect(rejected(raw), raw).toBe('path_invalid')
  })

  it('refuses targets not in origin form', () => {
    for (const raw of ['http://x/a', '*', 'a/b', '']) expect(rejected(raw), raw).toBe('path_invalid')
  })
})
