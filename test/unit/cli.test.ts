import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { main } from '../../src/cli.js'

function sink(): Writable & { text: string } {
  const w = new Writable({
    write(chunk, _enc, cb) {
      w.text += String(chunk)
      cb()
    },
  }) as Writable & { text: string }
  w.text = ''
  return w
}

async function run(...argv: string[]) {
  const out = sink()
  const err = sink()
  const code = await main(argv, out as never, err as never)
  return { code, out: out.text, err: err.text }
}

describe('gateway validate', () => {
  it('exits 0 for the shipped example config', async () => {
    const r = await run('validate', 'config/gateway.yaml')
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    expect(r.out).toContain('config/gateway.yaml: valid')
  })

  it('prints how long a revoked token keeps working on each protected route', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gw-cli-'))
    const file = join(dir, 'bounds.yaml')
    await writeFile(
      file,
      `revocation: { api_token: "operator-token-0123456789-0123456789" }
upstreams: { a: { echo: true } }
issuers:
  - { id: j, issuer: "https://j.example", jwks_uri: "https://j.example/jwks", audiences: [a] }
  - { id: o, issuer: "https://o.example", audiences: [a], introspection: { endpoint: "https://o.example/i", client_id: g, client_secret: s, max_ttl: 2m } }
routes:
  - { id: jwt, match: { path: /j }, upstream: a, auth: { issuers: [j], scopes: none } }
  - { id: opaque, match: { path: /o }, upstream: a, auth: { issuers: [o], scopes: none } }
`,
    )
    const r = await run('validate', file)
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/jwt \(j, jwt\) +until the token's exp; at once when revoked through the gateway's revocation API/)
    expect(r.out).toMatch(/opaque \(o, introspection\) +120s \(introspection.max_ttl\)/)
    const json = JSON.parse((await run('validate', file, '--json')).out) as { revocation_bounds: unknown[] }
    expect(json.revocation_bounds).toHaveLength(2)
  })

  it('exits 1 and prints every error with file, line and column', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gw-cli-'))
    const file = join(dir, 'bad.yaml')
    await writeFile(file, 'upstreams: { a: { url: "http://x" } }\nroutes:\n  - id: r\n    match: { path: /x, methods: [get] }\n    upstream: b\n    auth: pubic\n')
    const r = await run('validate', file)
    expect(r.code).toBe(1)
    expect(r.err).toContain('invalid configuration (3 errors)')
    expect(r.err).toContain(`${file}:4:34: routes[0] (r).match.methods[0]: must be an HTTP method`)
    expect(r.err).toContain(`${file}:6:11: routes[0] (r).auth: must be "public"`)
    // Reference checks run in the same pass, even when the file does not have the right shape.
    expect(r.err).toContain(`${file}:5:15: routes[0] (r).upstream: unknown upstream "b"; defined: a`)
    await writeFile(file, 'upstreams: { a: { url: "http://x" } }\nroutes:\n  - id: r\n    match: { path: /x }\n    upstream: b\n    auth: public\n')
    expect((await run('validate', file)).err).toContain(`${file}:5:15: routes[0] (r).upstream: unknown upstream "b"; defined: a`)
  })

  it('exits 1 for a missing file and 2 for bad usage', async () => {
    expect((await run('validate', '/nonexistent.yaml')).code).toBe(1)
    expect((await run('validate')).code).toBe(2)
    expect((await run('frobnicate')).code).toBe(2)
  })
})

describe('gateway hash-secret', () => {
  it('prints a scrypt hash of the secret read from stdin, which verifies', async () => {
    const { Readable } = await import('node:stream')
    const { parseSecretHash, verifySecret } = await import('../../src/authorization-server/secret-hash.js')
    const out = sink()
    const err = sink()
    const code = await main(['hash-secret'], out as never, err as never, Readable.from(['a-long-enough-secret\n']))
    expect(code).toBe(0)
    const hash = out.text.trim()
    expect(hash).toMatch(/^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/)
    const parsed = parseSecretHash(hash)!
    expect(await verifySecret('a-long-enough-secret', parsed)).toBe(true)
    expect(await verifySecret('a-long-enough-secret\n', parsed)).toBe(false)
    expect(out.text).not.toContain('a-long-enough-secret')
  })

  it('refuses short secrets', async () => {
    const { Readable } = await import('node:stream')
    expect(await main(['hash-secret'], sink() as never, sink() as never, Readable.from(['short']))).toBe(1)
  })
})

describe('for tools and CI', () => {
  it('--version prints the package version', async () => {
    const r = await run('--version')
    expect(r.code).toBe(0)
    expect(r.out.trim()).toMatch(/^\d+\.\d+\.\d+/)
  })

  it('validate --json: every error located, or valid with its warnings', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gw-cli-json-'))
    const bad = join(dir, 'bad.yaml')
    await writeFile(bad, 'upstreams: { a: { url: "http://[zz" } }\nroutes:\n  - { id: r, match: { path: /r }, upstream: a, auth: public, strip_prefix: "/:x" }\n')
    const r = await run('validate', '--json', bad)
    expect(r.code).toBe(1)
    const report = JSON.parse(r.out) as { valid: boolean; errors: Array<{ line: number; column: number; path: string; message: string }> }
    expect(report.valid).toBe(false)
    expect(report.errors.map((e) => e.path)).toEqual(['upstreams.a.url'])
    expect(report.errors[0]!.line).toBe(1)

    const warned = join(dir, 'warned.yaml')
    await writeFile(warned, 'upstreams: { a: { echo: true }, unused: { echo: true } }\nissuers: [{ id: lonely, issuer: "https://i.example", jwks_uri: "https://i.example/jwks", audiences: [x] }]\nroutes:\n  - { id: none, match: { path: "/*" }, upstream: a, auth: public }\n')
    const ok = await run('validate', '--json', warned)
    expect(ok.code).toBe(0)
    const w = (JSON.parse(ok.out) as { warnings: Array<{ path: string; message: string }> }).warnings
    expect(w.map((x) => x.path).sort()).toEqual(['issuers[0] (lonely).id', 'routes[0] (none).id', 'routes[0] (none).match.path', 'upstreams.unused'].sort())
    // Without --json the warnings go to stderr, the verdict to stdout, and the exit code stays 0.
    const text = await run('validate', warned)
    expect(text.code).toBe(0)
    expect(text.err).toContain('warning: ')
    expect(text.err).toContain('is used by no route')
    expect(text.out).toContain('4 warnings')
  })

  it('routes --json and explain --json give data', async () => {
    const routes = await run('routes', '--json', 'config/gateway.yaml')
    expect(routes.code).toBe(0)
    expect((JSON.parse(routes.out) as Array<{ id: string }>).map((r) => r.id)).toContain('orders-read')
    const explained = await run('explain', 'config/gateway.yaml', '--method', 'POST', '--path', '/orders/1', '--scopes', 'orders:read', '--json')
    expect(explained.code).toBe(1)
    expect(JSON.parse(explained.out)).toMatchObject({ decision: 'deny', status: 403, reason: 'scope_insufficient' })
  })

  it('explain says which binding a route takes and why a token fails it; routes shows it', async () => {
    const file = 'config/examples/sender-constrained.yaml'
    const jkt = 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs'
    const unbound = await run('explain', file, '--path', '/payments/1', '--scopes', 'payments:read')
    expect(unbound.code).toBe(1)
    expect(unbound.out).toContain('binding: the route takes DPoP-bound tokens only (dpop); the token is unbound; presented as Bearer')
    expect(unbound.out).toContain('token_binding_required')
    const asBearer = await run('explain', file, '--path', '/orders/1', '--scopes', 'orders:read', '--claims', JSON.stringify({ cnf: { jkt } }), '--json')
    expect(JSON.parse(asBearer.out)).toMatchObject({ decision: 'deny', status: 401, reason: 'token_binding_missing' })
    const withProof = await run('explain', file, '--path', '/payments/1', '--scopes', 'payments:read', '--claims', JSON.stringify({ cnf: { jkt } }), '--binding', 'dpop')
    expect(withProof.code).toBe(0)
    expect((await run('explain', file, '--path', '/orders/1', '--binding', 'tls')).code).toBe(2)
    const routes = await run('routes', file)
    expect(routes.out).toMatch(/payments .*binding dpop/)
  })
})

describe('validate, every error in one pass', () => {
  it('schema errors do not hide reference errors or rule errors', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gw-cli-all-'))
    const file = join(dir, 'many.yaml')
    await writeFile(
      file,
      [
        'server: { body_limit: "big" }', // schema: not a number
        'upstreams: { a: { echo: true } }',
        'routes:',
        '  - { id: r1, match: { path: /r }, upstream: nowhere, auth: public }', // reference
        '  - { id: r2, match: { path: /s, methods: [GTE] }, upstream: a, auth: public }', // schema
        '  - { id: r3, match: { path: /t }, upstream: a, auth: { issuers: [ghost], scopes: none } }', // reference
        '',
      ].join('\n'),
    )
    const r = await run('validate', '--json', file)
    expect(r.code).toBe(1)
    const paths = (JSON.parse(r.out) as { errors: Array<{ path: string; line: number }> }).errors.map((e) => `${e.line} ${e.path}`)
    expect(paths).toEqual(['1 server.body_limit', '4 routes[0] (r1).upstream', '5 routes[1] (r2).match.methods[0]', '6 routes[2] (r3).auth.issuers[0]'])
  })
})
