import fc from 'fast-check'
import { stringify } from 'yaml'
import { describe, expect, it } from 'vitest'
import { compileConfig } from '../../src/config/compile.js'
import { ConfigError } from '../../src/config/errors.js'
import { parseConfig } from '../../src/config/load.js'

// Fail closed, never crash: any file the YAML parser and the schema accept
// either compiles or is a located ConfigError, never anything else (a
// TypeError from a URL parser took a running gateway down on reload).

/** Mostly a sane value, sometimes a hostile one: configurations then both compile and fail. */
const mostly = <T>(sane: T, hostile: fc.Arbitrary<T>) => fc.oneof({ arbitrary: fc.constant(sane), weight: 10 }, { arbitrary: hostile, weight: 1 })

const hostileUrl = fc.oneof(
  fc.constantFrom('http://[zz', 'http://a:99999/', 'https://%zz', 'http://[::1', 'http://x:0/', 'https://x/%', 'http://example.com/;x', 'http://[fe80::1%25eth0]/', 'http://0x7f.1/', 'http://a/../..', 'http://u:p@h/', 'http://h/?q', 'http://h/a b', 'https://h/\u0000'),
  fc.webUrl(),
  fc.string({ maxLength: 30 }).map((s) => `http://${s}`),
)
const hostilePath = fc.oneof(
  fc.constantFrom('/', '/*', '/:', '/*/a', '/a/:b/:b', '/%zz', '/a;b', '/./..', '/:1x', '//', '/a\\b', '/%2F', '/A/B', '/orders/:id/*'),
  fc.string({ maxLength: 20 }).map((s) => '/' + s),
)
const duration = fc.tuple(fc.oneof(fc.constant(0), fc.nat(100), fc.nat(), fc.constant(99_999)), fc.constantFrom('ms', 's', 'm', 'h')).map(([n, u]) => `${n}${u}`)
const header = fc.oneof(fc.constantFrom('X-Client-Id', 'X-Forwarded-For', 'Host', 'x_client_id', 'Content-Type', 'X-Scopes'), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9-]{0,20}$/))
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined, freq: 2 })

const scalar = fc.oneof(fc.string({ maxLength: 8 }), fc.integer(), fc.boolean())
const claimPath = fc.oneof(fc.constantFrom('client_id', 'realm_access.roles', '"https://corp/tenant"', 'a..b', '"unclosed', '.x', 'x.', '""', 'a."b.c".d'), fc.string({ maxLength: 12 }))
const regex = fc.oneof(fc.constantFrom('[a-z]+', '(a+)+', '(a|a)*', '(?=x)y', '(a)\\1', '(', 'a{2,3}', '((ab)*c)+', '[(]+', '\\d+@x\\.y', '(?<n>a)\\k<n>'), fc.string({ maxLength: 12 }))
const { rule } = fc.letrec<{ rule: Record<string, unknown> }>((tie) => ({
  rule: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ claim: claimPath, equals: scalar }),
    fc.record({ claim: claimPath, one_of: fc.array(scalar, { minLength: 1, maxLength: 3 }) }),
    fc.record({ claim: claimPath, contains: scalar }),
    fc.record({ claim: claimPath, exists: fc.boolean() }),
    fc.record({ claim: claimPath, matches: regex }),
    fc.record({ claim: claimPath, matches_path_param: fc.constantFrom('id', 'tenant', 'x_1') }),
    fc.record({ matches_path_param: fc.constant('id') }),
    fc.record({ claim: claimPath, equals: scalar, exists: fc.boolean() }),
    fc.record({ all_of: fc.array(tie('rule'), { minLength: 1, maxLength: 3 }) }),
    fc.record({ any_of: fc.array(tie('rule'), { minLength: 1, maxLength: 3 }) }),
    fc.record({ not: tie('rule') }),
    fc.record({ not: tie('rule'), claim: claimPath }),
    fc.record({ id: fc.constantFrom('a', 'b', 'a'), all_of: fc.array(tie('rule'), { minLength: 1, maxLength: 2 }) }),
  ),
}))
const origin = fc.oneof(fc.constantFrom('https://app.example', '*', 'https://*.example.com', 'null', 'https://a.example/', 'http://[::1]:3000', 'https://*.com', 'ftp://x', 'https://a.example:99999'), fc.webUrl(), fc.string({ maxLength: 15 }))
const corsArb = fc.record({
  allowed_origins: fc.uniqueArray(origin, { minLength: 1, maxLength: 3 }),
  allowed_methods: maybe(fc.uniqueArray(fc.constantFrom('GET', 'POST', 'DELETE', 'PROPFIND'), { minLength: 1 })),
  allowed_headers: maybe(fc.uniqueArray(fc.constantFrom('Authorization', 'Content-Type', 'X-A'), { maxLength: 3 })),
  max_age: maybe(mostly('10m', duration)),
  allow_credentials: maybe(fc.boolean()),
}).map((c) => Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined)))

const strip = <T extends Record<string, unknown>>(c: T) => Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined))
const limitArb = fc
  .record({
    id: fc.constantFrom('a', 'b', 'a', 'per-client'),
    requests: mostly(5, fc.integer({ min: 1, max: 1_000_000_000 })),
    per: mostly('10s', duration),
    burst: maybe(fc.integer({ min: 1, max: 1_000_000_000 })),
    by: mostly(['ip'], fc.uniqueArray(fc.oneof(fc.constantFrom('client_id', 'sub', 'ip'), claimPath.map((p) => `claim:${p}`)), { minLength: 1, maxLength: 3 })),
    on_redis_error: maybe(fc.constantFrom('allow', 'deny', 'local')),
    batch: maybe(fc.integer({ min: 1, max: 1000 })),
  })
  .map(strip)
const nodeAddress = fc.constantFrom('127.0.0.1:7000', '[::1]:7001', '[zz]:1', 'h:99999', 'a:0', 'redis-0:6379', '[1.2.3.4]:5')
const redisArb = fc.oneof(
  fc.record({ url: mostly('redis://127.0.0.1:6379', fc.constantFrom('redis://[zz', 'rediss://a:99999', 'redis://%zz/0', 'redis://u:p@h:1/99')), db: maybe(fc.integer({ min: 0, max: 15 })) }).map(strip),
  fc.record({ sentinel: fc.record({ master_name: fc.constant('m'), nodes: fc.uniqueArray(nodeAddress, { minLength: 1, maxLength: 3 }) }), db: maybe(fc.integer({ min: 0, max: 15 })), wait_replicas: maybe(fc.integer({ min: 0, max: 16 })) }).map(strip),
  fc.record({ cluster: fc.record({ nodes: fc.uniqueArray(nodeAddress, { minLength: 1, maxLength: 3 }) }), db: maybe(fc.integer({ min: 0, max: 15 })), tls: maybe(fc.boolean()) }).map(strip),
  fc.record({ url: fc.constant('redis://h'), cluster: fc.record({ nodes: fc.constant(['h:1']) }) }),
  fc.constant({}),
)

const tracingArb = fc
  .record({
    endpoint: maybe(mostly('http://127.0.0.1:4318/v1/traces', hostileUrl)),
    protocol: maybe(fc.constantFrom('http/protobuf', 'http/json')),
    sample_ratio: maybe(fc.oneof(fc.constant(0.01), fc.double({ min: 0, max: 1, noNaN: true }))),
    incoming: maybe(fc.constantFrom('trusted', 'always', 'link')),
    queue: maybe(fc.record({ max_spans: fc.integer({ min: 1, max: 5000 }), batch_spans: fc.integer({ min: 1, max: 5000 }), delay: mostly('5s', duration), export_timeout: mostly('10s', duration) })),
  })
  .map(strip)

/** Mostly absent: sections that, when present, are often refused (files that do not exist, no trusted proxies). */
const rare = <T>(arb: fc.Arbitrary<T>) => fc.oneof({ arbitrary: fc.constant(undefined), weight: 8 }, { arbitrary: arb, weight: 1 })
/** Present one time in four: fields whose values are mostly hostile (so that enough configurations still compile). */
const sometimes = <T>(arb: fc.Arbitrary<T>) => fc.oneof({ arbitrary: fc.constant(undefined), weight: 3 }, { arbitrary: arb, weight: 1 })
const bindingArb = fc.constantFrom('optional', 'dpop', 'mtls', 'any')
const dpopArb = fc
  .record({
    algorithms: maybe(fc.uniqueArray(fc.constantFrom('ES256', 'EdDSA', 'RS256', 'PS512'), { minLength: 1 })),
    max_age: maybe(mostly('60s', duration)),
    clock_skew: maybe(mostly('5s', duration)),
    nonce: maybe(fc.record({ secret: maybe(fc.constantFrom('s'.repeat(32), 'another-secret-of-32-characters!!')), lifetime: maybe(mostly('5m', duration)) }).map(strip)),
    replay: maybe(fc.record({ on_redis_error: maybe(fc.constantFrom('deny', 'local')), max_entries: maybe(fc.integer({ min: 1000, max: 100_000_000 })) }).map(strip)),
  })
  .map(strip)
const tlsArb = fc
  .record({
    listen: maybe(fc.constantFrom('127.0.0.1:0', '0.0.0.0:99999', '[::]:8443')),
    cert: fc.constantFrom('missing.crt', '/dev/null', '../x.pem'),
    key: fc.constantFrom('missing.key', '/dev/null'),
    min_version: maybe(fc.constantFrom('TLSv1.2', 'TLSv1.3')),
    client_certificates: maybe(fc.record({ mode: fc.constantFrom('request', 'require'), ca: maybe(fc.constantFrom('ca.pem', '/dev/null')) }).map(strip)),
  })
  .map(strip)

const configArb = fc.record({
  dpop: rare(dpopArb),
  binding: maybe(bindingArb),
  issuerBinding: maybe(bindingArb),
  tls: rare(tlsArb),
  noPlain: rare(fc.constant(true)),
  certHeader: rare(fc.record({ name: header, format: fc.constantFrom('xfcc', 'pem', 'rfc9440') })),
  tracing: maybe(tracingArb),
  routeLimits: maybe(fc.oneof(fc.array(limitArb, { maxLength: 3 }), fc.constant(false))),
  publicLimits: maybe(fc.array(limitArb, { maxLength: 2 })),
  defaultLimits: maybe(fc.array(limitArb, { maxLength: 2 })),
  processes: maybe(fc.integer({ min: 1, max: 100_000 })),
  redis: sometimes(redisArb),
  claims: sometimes(fc.array(rule, { minLength: 1, maxLength: 3 })),
  stepUp: maybe(fc.record({ acr_values: maybe(fc.uniqueArray(fc.constantFrom('urn:a', 'urn:b'), { minLength: 1 })), max_age: maybe(mostly('10m', duration)) }).map((c) => Object.fromEntries(Object.entries(c).filter(([, v]) => v !== undefined)))),
  cors: maybe(corsArb),
  routeCors: maybe(fc.oneof(corsArb, fc.constant(false))),
  listen: sometimes(fc.constantFrom('127.0.0.1:0', '0.0.0.0:99999', '[::]:8080', 'localhost:65536')),
  trust: sometimes(fc.array(fc.constantFrom('10.0.0.0/8', 'loopback', '10.0.0.0/8', 'loopback', '::1', '10.0.0.0/33', 'x', '1.2.3.4/8/9', '::/0'), { minLength: 1, maxLength: 3 })),
  upstreamUrl: mostly('http://127.0.0.1:9/v1', hostileUrl),
  upstreamTimeout: maybe(mostly('5s', duration)),
  maxConnections: maybe(fc.integer({ min: 1, max: 70_000 })),
  queueTimeout: maybe(mostly('1s', duration)),
  path: mostly('/orders/:id/*', hostilePath),
  stripPrefix: maybe(mostly('/orders', hostilePath)),
  host: maybe(fc.constantFrom('api.example.com', '*.example.com', 'A.B')),
  methods: maybe(fc.uniqueArray(fc.constantFrom('GET', 'HEAD', 'POST', 'DELETE', 'TRACE', 'PROPFIND'), { minLength: 1 })),
  methodScopes: maybe(fc.constantFrom('GET', 'POST', 'TRACE', 'QUERY')),
  jwksUri: maybe(mostly('https://i.example/jwks', hostileUrl)),
  discovery: fc.boolean(),
  issuer: mostly('https://i.example', fc.oneof(hostileUrl, fc.constant('urn:x'))),
  introspection: maybe(mostly('https://i.example/introspect', hostileUrl)),
  skew: maybe(mostly('30s', duration)),
  jwksTimings: maybe(fc.record({ cooldown: mostly('30s', duration), max_age: mostly('10m', duration), timeout: mostly('5s', duration) })),
  asIssuer: maybe(mostly('http://127.0.0.1:8080', hostileUrl)),
  resource: maybe(mostly('https://api.example/v1', hostileUrl)),
  identity: maybe(mostly('X-Client', header)),
  strip: maybe(fc.array(fc.constantFrom('X-Tenant', 'X-Internal-*', 'x_y', 'A*'), { maxLength: 3 })),
  limits: maybe(fc.record({ header_timeout: mostly('10s', duration), request_timeout: mostly('60s', duration), body_idle_timeout: mostly('15s', duration), keep_alive_timeout: mostly('30s', duration) })),
  caseInsensitive: fc.boolean(),
  drain: maybe(mostly('10s', duration)),
})

function toYaml(c: fc.Arbitrary<unknown> extends never ? never : typeof configArb extends fc.Arbitrary<infer T> ? T : never): string {
  const doc: Record<string, unknown> = {
    server: {
      ...(c.tls ? { tls: c.tls } : {}),
      ...(c.noPlain ? { listen: false } : {}),
      ...(c.certHeader ? { client_certificate_header: c.certHeader } : {}),
      ...(c.listen && !c.noPlain ? { listen: c.listen } : {}), ...(c.trust ? { trust_proxy: c.trust } : {}), ...(c.drain ? { drain_timeout: c.drain } : {}), case_insensitive_paths: c.caseInsensitive },
    upstreams: { up: { url: c.upstreamUrl, ...(c.upstreamTimeout ? { timeout: c.upstreamTimeout } : {}), ...(c.maxConnections ? { max_connections: c.maxConnections } : {}), ...(c.queueTimeout ? { queue_timeout: c.queueTimeout } : {}) }, echo: { echo: true } },
    issuers: [
      {
        id: 'i',
        issuer: c.issuer,
        audiences: ['a'],
        ...(c.jwksUri ? { jwks_uri: c.jwksUri } : {}),
        ...(c.discovery ? { discovery: true } : {}),
        ...(c.introspection ? { introspection: { endpoint: c.introspection, client_id: 'g', client_secret: 's' } } : {}),
        ...(!c.jwksUri && !c.discovery && !c.introspection ? { jwks_uri: 'https://i.example/jwks' } : {}),
        ...(c.skew ? { clock_skew: c.skew } : {}),
        ...(c.jwksTimings ? { jwks: c.jwksTimings } : {}),
        ...(c.issuerBinding ? { binding: c.issuerBinding } : {}),
      },
    ],
    routes: [
      {
        id: 'r',
        match: { path: c.path, ...(c.host ? { host: c.host } : {}), ...(c.methods ? { methods: c.methods } : {}) },
        upstream: 'up',
        ...(c.stripPrefix ? { strip_prefix: c.stripPrefix } : {}),
        auth: {
          issuers: ['i'],
          scopes: 'none',
          ...(c.methodScopes ? { method_scopes: { [c.methodScopes]: { all_of: ['w'] } } } : {}),
          ...(c.claims ? { claims: c.claims } : {}),
          ...(c.stepUp ? { step_up: c.stepUp } : {}),
          ...(c.binding ? { binding: c.binding } : {}),
        },
        ...(c.routeCors !== undefined ? { cors: c.routeCors } : {}),
        ...(c.routeLimits !== undefined ? { rate_limits: c.routeLimits } : {}),
      },
      { id: 'p', match: { path: '/public/*' }, upstream: 'echo', auth: 'public', ...(c.publicLimits ? { rate_limits: c.publicLimits } : {}) },
    ],
    ...(c.defaultLimits || c.processes ? { rate_limits: { ...(c.defaultLimits ? { default: c.defaultLimits } : {}), ...(c.processes ? { replicas_hint: c.processes } : {}) } } : {}),
    ...(c.redis ? { cache: { redis: c.redis } } : {}),
    ...(c.tracing ? { tracing: c.tracing } : {}),
    ...(c.dpop ? { dpop: c.dpop } : {}),
    ...(c.asIssuer ? { authorization_server: { issuer: c.asIssuer, clients: [] } } : {}),
    ...(c.resource ? { protected_resource: { resource: c.resource } } : {}),
    ...(c.identity || c.strip ? { identity_headers: { ...(c.identity ? { client_id: c.identity } : {}), ...(c.strip ? { strip_request_headers: c.strip } : {}) } } : {}),
    ...(c.limits ? { limits: c.limits } : {}),
    ...(c.cors ? { cors: c.cors } : {}),
  }
  return stringify(doc)
}

describe('the compiler on hostile but parseable configurations', () => {
  it('either compiles or throws a located ConfigError, never anything else', async () => {
    let compiled = 0
    let refused = 0
    await fc.assert(
      fc.asyncProperty(configArb, async (c) => {
        const text = toYaml(c)
        let parsed
        try {
          parsed = parseConfig(text, 'hostile.yaml', {})
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigError)
          return
        }
        try {
          await compileConfig(parsed)
          compiled++
        } catch (err) {
          if (!(err instanceof ConfigError)) throw new Error(`not a ConfigError for:\n${text}`, { cause: err })
          for (const issue of err.issues) {
            expect(issue.line, issue.message).toBeGreaterThan(0)
            expect(issue.message.length).toBeGreaterThan(0)
          }
          refused++
        }
      }),
      { numRuns: 600 },
    )
    // The generator reaches both outcomes.
    expect(compiled).toBeGreaterThan(0)
    expect(refused).toBeGreaterThan(0)
  })
})
