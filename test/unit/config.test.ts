import { generateKeyPairSync } from 'node:crypto'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { compileConfig } from '../../src/config/compile.js'
import { ConfigError, type ConfigIssue } from '../../src/config/errors.js'
import { parseConfig } from '../../src/config/load.js'
import { usableCpus } from '../../src/collector.js'

const BASE = `upstreams:
  orders: { url: "http://127.0.0.1:9999" }
issuers:
  - id: corp
    issuer: https://auth.example.com
    jwks_uri: https://auth.example.com/jwks
    audiences: [orders-api]
routes:
  - id: orders
    match: { path: /orders/*, methods: [GET] }
    upstream: orders
    auth: { issuers: [corp], scopes: { all_of: [orders:read] } }
`

async function issues(yaml: string, env: NodeJS.ProcessEnv = {}, file = '/etc/gateway/gateway.yaml'): Promise<ConfigIssue[]> {
  try {
    await compileConfig(parseConfig(yaml, file, env))
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).code).toBe('config_invalid')
    return [...(err as ConfigError).issues]
  }
  throw new Error('the configuration was accepted')
}

async function only(yaml: string, env: NodeJS.ProcessEnv = {}): Promise<ConfigIssue> {
  const found = await issues(yaml, env)
  expect(found, JSON.stringify(found, null, 2)).toHaveLength(1)
  return found[0]!
}

describe('a valid configuration', () => {
  it('compiles', async () => {
    const config = await compileConfig(parseConfig(BASE, 'g.yaml', {}))
    expect(config.router.routes.map((r) => r.id)).toEqual(['orders'])
    expect(Object.isFrozen(config)).toBe(true)
    expect(config.server).toMatchObject({ host: '0.0.0.0', port: 8080, realm: 'gateway', trustProxy: false })
    const issuer = config.issuers.get('corp')!
    expect(issuer).toMatchObject({ algorithms: ['RS256', 'ES256', 'EdDSA'], clockSkewSeconds: 30, requireTyp: undefined })
  })
})

describe('syntax', () => {
  it('reports YAML errors with their line', async () => {
    const issue = await only('upstreams:\n  orders: { url: "x"\nroutes: []\n')
    expect(issue.file).toBe('/etc/gateway/gateway.yaml')
    expect(issue.line).toBeGreaterThanOrEqual(2)
  })

  it('refuses duplicate keys', async () => {
    const issue = await only(BASE.replace('    audiences: [orders-api]\n', '    audiences: [orders-api]\n    audiences: [x]\n'))
    expect(issue.line).toBe(8)
    expect(issue.message).toMatch(/unique/i)
  })
})

describe('schema', () => {
  it('names an unknown key with its place and the allowed keys', async () => {
    const issue = await only(BASE.replace('    audiences:', '    audiencs: [a]\n    audiences:'))
    expect(issue).toMatchObject({ line: 7, column: 5, path: 'issuers[0] (corp).audiencs' })
    expect(issue.message).toContain('unknown field "audiencs"; allowed here: id, issuer, discovery, jwks_uri, keys, audiences')
  })

  it('refuses generated signing keys with several workers (each would sign with its own)', async () => {
    const found = await issues(`server: { workers: 2 }
authorization_server: { issuer: "http://127.0.0.1:8080", clients: [] }
identity_assertion: { issuer: gw }
upstreams: { e: { echo: true } }
routes: [{ id: r, match: { path: /r }, upstream: e, auth: public }]
`)
    expect(found.map((i) => i.message)).toEqual([expect.stringMatching(/signing keys must come from files/), expect.stringMatching(/assertion keys must come from files/)])
  })

  it('names a missing required field', async () => {
    const issue = await only(BASE.replace('    upstream: orders\n', ''))
    expect(issue).toMatchObject({ line: 9, path: 'routes[0] (orders).upstream', message: 'missing required field "upstream"' })
  })

  it('refuses a protected route without a scope requirement (no silent "any token")', async () => {
    const issue = await only(BASE.replace('auth: { issuers: [corp], scopes: { all_of: [orders:read] } }', 'auth: { issuers: [corp] }'))
    expect(issue).toMatchObject({ line: 12, path: 'routes[0] (orders).auth.scopes', message: 'missing required field "scopes"' })
  })

  it('says what a field must be and what it got', async () => {
    const issue = await only(BASE.replace('methods: [GET]', 'methods: [GTE]'))
    expect(issue).toMatchObject({ line: 10, column: 41, path: 'routes[0] (orders).match.methods[0]' })
    expect(issue.message).toBe('must be an HTTP method name from the IANA registry (GET, POST, PROPFIND, QUERY…), upper-case, got "GTE"')
  })

  it('explains a bad duration', async () => {
    const issue = await only(BASE.replace('url: "http://127.0.0.1:9999" }', 'url: "http://127.0.0.1:9999", timeout: 10 seconds }'))
    expect(issue).toMatchObject({ line: 2, path: 'upstreams.orders.timeout' })
    expect(issue.message).toMatch(/^must be a duration/)
  })

  it('explains a union that nothing matched', async () => {
    const issue = await only(BASE.replace('auth: { issuers: [corp], scopes: { all_of: [orders:read] } }', 'auth: publik'))
    expect(issue).toMatchObject({ line: 12, path: 'routes[0] (orders).auth' })
    expect(issue.message).toMatch(/^must be "public" .* got "publik"$/)
  })

  it('reports the inner error of a union branch that fits', async () => {
    const issue = await only(BASE.replace('scopes: { all_of: [orders:read] }', 'scopes: { all_of: orders:read }'))
    expect(issue).toMatchObject({ line: 12, path: 'routes[0] (orders).auth.scopes.all_of', message: 'must be a list, got "orders:read"' })
  })

  it('never accepts HMAC or none', async () => {
    const issue = await only(BASE.replace('    audiences: [orders-api]\n', '    audiences: [orders-api]\n    algorithms: [RS256, HS256]\n'))
    expect(issue).toMatchObject({ line: 8, path: 'issuers[0] (corp).algorithms[1]' })
    expect((await only(BASE.replace('    audiences: [orders-api]\n', '    audiences: [orders-api]\n    algorithms: [none]\n'))).path).toBe('issuers[0] (corp).algorithms[0]')
  })

  it('reports every problem at once, in file order', async () => {
    const found = await issues(BASE.replace('methods: [GET]', 'methods: [GTE]').replace('    audiences:', '    audiencs: [a]\n    audiences:'))
    expect(found.map((i) => i.line)).toEqual([7, 11])
  })
})

describe('environment variables', () => {
  it('interpolates ${VAR} and ${VAR:-default}', async () => {
    const yaml = BASE.replace('http://127.0.0.1:9999', '${UP_URL}').replace('https://auth.example.com/jwks', '${JWKS:-https://d.example/jwks}')
    const config = await compileConfig(parseConfig(yaml + 'server:\n  body_limit: ${LIMIT}\n', 'g.yaml', { UP_URL: 'http://up:1/base', LIMIT: '2048' }))
    expect(config.router.routes[0]!.upstream).toMatchObject({ kind: 'http', base: 'http://up:1/base' })
    expect(config.server.bodyLimit).toBe(2048)
  })

  it('reports an unset variable with its line', async () => {
    const issue = await only(BASE.replace('http://127.0.0.1:9999', '${UP_URL}'))
    expect(issue).toMatchObject({ line: 2, message: 'environment variable UP_URL is not set' })
  })

  it('never lets a value add structure', async () => {
    const yaml = BASE.replace('https://auth.example.com\n', '"${ISS}"\n')
    const config = await compileConfig(parseConfig(yaml, 'g.yaml', { ISS: 'x\n    jwks_uri: http://evil/jwks' }))
    expect(config.issuers.get('corp')!.issuer).toBe('x\n    jwks_uri: http://evil/jwks')
  })

  it('writes a literal ${ with $${', async () => {
    const config = await compileConfig(parseConfig(BASE.replace('https://auth.example.com\n', () => '"$${NOT_A_VAR}"\n'), 'g.yaml', {}))
    expect(config.issuers.get('corp')!.issuer).toBe('${NOT_A_VAR}')
  })
})

describe('references and meaning', () => {
  it('refuses an unknown upstream', async () => {
    const issue = await only(BASE.replace('    upstream: orders', '    upstream: order'))
    expect(issue).toMatchObject({ line: 11, column: 15, path: 'routes[0] (orders).upstream', message: 'unknown upstream "order"; defined: orders' })
  })

  it('refuses an unknown issuer', async () => {
    const issue = await only(BASE.replace('issuers: [corp]', 'issuers: [corp, crop]'))
    expect(issue).toMatchObject({ line: 12, path: 'routes[0] (orders).auth.issuers[1]', message: 'unknown issuer "crop"; defined: corp' })
  })

  it('refuses duplicate route ids', async () => {
    const yaml = BASE + `  - id: orders
    match: { path: /other }
    upstream: orders
    auth: public
`
    expect(await only(yaml)).toMatchObject({ line: 13, path: 'routes[1] (orders).id' })
  })

  it('refuses two routes that match exactly the same requests', async () => {
    const yaml = BASE + `  - id: orders-again
    match: { path: "/orders//*", methods: [HEAD, GET] }
    upstream: orders
    auth: public
`
    const issue = await only(yaml)
    expect(issue).toMatchObject({ line: 14, path: 'routes[1] (orders-again).match' })
    expect(issue.message).toContain('routes "orders" and "orders-again" both match GET requests')
  })

  it('refuses malformed path patterns', async () => {
    const issue = await only(BASE.replace('/orders/*', '/orders/*/x'))
    expect(issue).toMatchObject({ line: 10, path: 'routes[0] (orders).match.path', message: '"*" is only allowed as the last segment' })
  })

  it('refuses a strip_prefix that is not the start of the path', async () => {
    const issue = await only(BASE.replace('    upstream: orders\n', '    upstream: orders\n    strip_prefix: /ord\n'))
    expect(issue).toMatchObject({ line: 12, path: 'routes[0] (orders).strip_prefix' })
  })

  it('refuses an issuer without keys', async () => {
    const issue = await only(BASE.replace('    jwks_uri: https://auth.example.com/jwks\n', ''))
    expect(issue).toMatchObject({ line: 4, path: 'issuers[0] (corp)', message: 'an issuer needs jwks_uri, keys, discovery or introspection to verify tokens' })
  })

  it('refuses keys over plain http except on loopback or when allowed', async () => {
    const issue = await only(BASE.replace('https://auth.example.com/jwks', 'http://auth.example.com/jwks'))
    expect(issue).toMatchObject({ line: 6, path: 'issuers[0] (corp).jwks_uri' })
    await compileConfig(parseConfig(BASE.replace('https://auth.example.com/jwks', 'http://127.0.0.1:8/jwks'), 'g.yaml', {}))
    await compileConfig(parseConfig(BASE.replace('https://auth.example.com/jwks', 'http://auth/jwks\n    allow_insecure_http: true'), 'g.yaml', {}))
  })

  it('refuses identity headers the gateway cannot own, or that fold together', async () => {
    expect(await only(BASE + 'identity_headers: { client_id: X-Forwarded-For }\n')).toMatchObject({ line: 13, path: 'identity_headers.client_id' })
    expect(await only(BASE + 'identity_headers: { subject: Authorization }\n')).toMatchObject({ path: 'identity_headers.subject' })
    const fold = await only(BASE + 'identity_headers: { claims: { tenant: X-Client-ID } }\n')
    expect(fold).toMatchObject({ path: 'identity_headers.claims.tenant' })
    expect(fold.message).toContain('same header as identity_headers.client_id')
  })

  it('refuses per-method scopes for a method the route does not serve', async () => {
    const issue = await only(BASE.replace('scopes: { all_of: [orders:read] } }', 'scopes: { all_of: [orders:read] }, method_scopes: { POST: { all_of: [w] } } }'))
    expect(issue).toMatchObject({ line: 12, path: 'routes[0] (orders).auth.method_scopes.POST' })
  })
})

describe('static key files', () => {
  it('loads a PEM public key and refuses a private one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gw-keys-'))
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    await writeFile(join(dir, 'pub.pem'), publicKey.export({ type: 'spki', format: 'pem' }))
    await writeFile(join(dir, 'priv.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }))
    const yaml = (file: string) => BASE.replace('    jwks_uri: https://auth.example.com/jwks\n', `    keys: [{ file: ${file}, kid: k1 }]\n`)
    await compileConfig(parseConfig(yaml('pub.pem'), join(dir, 'gateway.yaml'), {}))
    const [issue] = await issues(yaml('priv.pem'), {}, join(dir, 'gateway.yaml'))
    expect(issue).toMatchObject({ line: 6, path: 'issuers[0] (corp).keys[0].file' })
    expect(issue!.message).toContain('private key')
    const [missing] = await issues(yaml('nope.pem'), {}, join(dir, 'gateway.yaml'))
    expect(missing!.message).toContain('key file not found')
  })
})

describe('introspection settings', () => {
  const withIntrospection = (extra = '') =>
    BASE.replace(
      '    audiences: [orders-api]\n',
      `    audiences: [orders-api]\n    introspection: { endpoint: "https://auth.example.com/introspect", client_id: gw, client_secret: s }\n${extra}`,
    )

  it('defaults to auto with keys and introspection, introspection without keys, jwt without introspection', async () => {
    expect((await compileConfig(parseConfig(withIntrospection(), 'g.yaml', {}))).issuers.get('corp')!.mode).toBe('auto')
    expect((await compileConfig(parseConfig(withIntrospection().replace('    jwks_uri: https://auth.example.com/jwks\n', ''), 'g.yaml', {}))).issuers.get('corp')!.mode).toBe('introspection')
    expect((await compileConfig(parseConfig(BASE, 'g.yaml', {}))).issuers.get('corp')!.mode).toBe('jwt')
  })

  it('refuses a mode the issuer cannot serve', async () => {
    expect(await only(BASE.replace('    audiences: [orders-api]\n', '    audiences: [orders-api]\n    validation: introspection\n'))).toMatchObject({
      path: 'issuers[0] (corp).validation',
      message: 'validation "introspection" needs introspection settings',
    })
    const routeLevel = await issues(BASE.replace('scopes: { all_of: [orders:read] } }', 'scopes: { all_of: [orders:read] }, validation: jwt_and_introspection }'))
    expect(routeLevel[0]).toMatchObject({ line: 12, path: 'routes[0] (orders).auth.validation' })
    expect(routeLevel[0]!.message).toContain('needs introspection, but issuer "corp" has no introspection settings')
  })

  it('refuses introspection without an endpoint or discovery, and over plain http', async () => {
    expect(await only(BASE.replace('    audiences: [orders-api]\n', '    audiences: [orders-api]\n    introspection: { client_id: gw, client_secret: s }\n'))).toMatchObject({
      path: 'issuers[0] (corp).introspection',
    })
    expect((await only(withIntrospection().replace('https://auth.example.com/introspect', 'http://auth.example.com/introspect'))).path).toBe(
      'issuers[0] (corp).introspection.endpoint',
    )
  })

  it('refuses a route whose opaque tokens could go to two introspection endpoints', async () => {
    const yaml = withIntrospection().replace(
      'routes:',
      `  - id: other
    issuer: https://other.example.com
    audiences: [orders-api]
    introspection: { endpoint: "https://other.example.com/introspect", client_id: gw, client_secret: s }
routes:`,
    ).replace('issuers: [corp]', 'issuers: [corp, other]')
    const issue = await only(yaml)
    expect(issue.path).toBe('routes[0] (orders).auth.issuers')
    expect(issue.message).toContain('several issuers (corp, other)')
  })

  it('needs a long integrity key', async () => {
    expect((await only(BASE + 'cache: { redis: { url: "redis://r:6379", integrity_key: short } }\n')).path).toBe('cache.redis.integrity_key')
  })
})

describe('authorization server settings', () => {
  const AS = (client: string) => `authorization_server:
  issuer: http://127.0.0.1:8080
  clients:
${client}`
  const client = (extra = '') => `    - client_id: c
      secret_hash: "$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
      scopes: [a]
      audiences: [x]
${extra}`

  it('compiles, generating a development key and saying so', async () => {
    const config = await compileConfig(parseConfig(BASE + AS(client()), 'g.yaml', {}))
    expect(config.authorizationServer?.generatedKey).toBe(true)
    expect(config.notices[0]).toContain('generated an ES256 signing key')
    expect(config.router.routes.map((r) => r.id)).toEqual(expect.arrayContaining(['@as:token', '@as:jwks', '@as:metadata', '@as:introspect']))
  })

  it('refuses a secret in place of its hash', async () => {
    const issue = await only(BASE + AS(client().replace(/secret_hash: ".*"/, 'secret_hash: "my-plain-secret"')))
    expect(issue).toMatchObject({ path: 'authorization_server.clients[0].secret_hash' })
    expect(issue.message).toContain('gateway hash-secret')
  })

  it('refuses default scopes the client may not have', async () => {
    expect(await only(BASE + AS(client('      default_scopes: [b]\n')))).toMatchObject({ path: 'authorization_server.clients[0].default_scopes[0]' })
  })

  it('refuses a route that would shadow a built-in endpoint', async () => {
    const shadow = `  - id: shadow
    match: { path: /oauth2/token, methods: [POST] }
    upstream: orders
    auth: public
`
    const found = await issues(BASE.replace('routes:\n', 'routes:\n' + shadow) + AS(client()))
    expect(found).toHaveLength(1)
    expect(found[0]!.path).toBe('routes[0] (shadow).match')
    expect(found[0]!.message).toContain('"@as:token"')
  })
})

describe('server settings', () => {
  it('refuses trusted proxies that are not addresses or ranges', async () => {
    const found = await issues(BASE + 'server: { trust_proxy: ["10.0.0.0/8", "loopback", "::1", "10.0.0.0/33", "proxy.internal", "1.2.3.4/8/9"] }\n')
    expect(found.map((i) => i.path)).toEqual(['server.trust_proxy[3]', 'server.trust_proxy[4]', 'server.trust_proxy[5]'])
    expect(found[0]!.line).toBe(13)
  })
})

describe('sender-constrained settings', () => {
  it('refuses what cannot work and warns about per-process DPoP state', async () => {
    const refused = await issues(`${BASE}server: { workers: 2, listen: false }\ndpop: { nonce: { lifetime: 1s }, max_age: 20m }\n`)
    expect(refused.map((i) => i.path)).toEqual(expect.arrayContaining(['server.listen', 'dpop.nonce', 'dpop.max_age', 'dpop.nonce.lifetime']))
    const header = await issues(`${BASE}server: { client_certificate_header: { name: X-Forwarded-Client-Cert, format: xfcc } }\n`)
    expect(header.map((i) => i.message)).toEqual([expect.stringContaining('trust_proxy')])
    const tls = await issues(`${BASE}server: { tls: { cert: missing.crt, key: missing.key, client_certificates: { mode: require } } }\n`)
    expect(tls.map((i) => i.path).sort()).toEqual(['server.tls.cert', 'server.tls.client_certificates.ca', 'server.tls.key'])

    const warned = await compileConfig(
      parseConfig(`${BASE.replace('scopes: { all_of: [orders:read] } }', 'scopes: { all_of: [orders:read] }, binding: dpop }')}server: { workers: 2 }\ndpop: { nonce: { secret: "${'s'.repeat(32)}" } }\n`, '/etc/gateway/gateway.yaml', {}),
    )
    expect(warned.warnings.map((w) => w.message)).toEqual(expect.arrayContaining([expect.stringContaining('each worker remembers only the DPoP proofs it saw')]))
    const shared = await compileConfig(parseConfig(`${BASE}cache: { redis: { url: "redis://127.0.0.1:6379" } }\ndpop: { nonce: { lifetime: 5m } }\n`, '/etc/gateway/gateway.yaml', {}))
    expect(shared.warnings.map((w) => w.path)).toContain('dpop.nonce')
  })
})

describe('server.workers: auto', () => {
  const workersFor = async (cpus: number | undefined) =>
    (await compileConfig(parseConfig(`${BASE}server: { workers: auto }\n`, '/etc/gateway/gateway.yaml', {}), cpus === undefined ? {} : { cpus })).server.workers

  it('is a worker per whole CPU the process may use, at least one', async () => {
    expect(await workersFor(4)).toBe(4)
    expect(await workersFor(2.5)).toBe(2) // a quota of 2.5 CPUs
    expect(await workersFor(1)).toBe(1)
    expect(await workersFor(0.5)).toBe(1)
  })

  it("reads this process's CPUs (affinity and cgroup quota) when not told", async () => {
    expect(await workersFor(undefined)).toBe(Math.max(1, Math.floor(usableCpus())))
  })
})
