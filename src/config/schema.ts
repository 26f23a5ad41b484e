import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { IdentityAssertionSchema, UpstreamAssertionSchema } from './assertion.js'
import { CorsSchema, RouteCorsSchema } from './cors.js'
import { UpstreamTlsSchema } from './upstream-tls.js'
import { RevocationSchema } from './revocation.js'
import { LimitsSchema, UpstreamLimitFields } from './limits.js'
import { ClaimRulesSchema, StepUpSchema } from './route-policy.js'
import { RedisSchema } from './redis.js'
import { RateLimitsSchema, RouteRateLimitsSchema } from './rate-limits.js'
import { TracingSchema } from './tracing.js'
import { BindingSchema, CertificateHeaderSchema, DpopSchema } from './sender-constraint.js'
import { ListenerTlsSchema } from './tls-listener.js'
import { RouteWebSocketSchema } from './websocket.js'
import { RouteStreamSchema } from './stream.js'
import { Http2Schema } from './http2.js'

/**
 * The configuration file's schema: the one source for the validator, the
 * TypeScript types and the published `schema/gateway.schema.json`.
 * Defaults are named here, beside the shape they belong to.
 */
export const DEFAULTS = {
  listen: '0.0.0.0:8080',
  adminListen: '127.0.0.1:9090',
  realm: 'gateway',
  bodyLimit: 1024 * 1024,
  algorithms: ['RS256', 'ES256', 'EdDSA'] as const,
  clockSkew: '30s',
  jwksCooldown: '30s',
  jwksMaxAge: '10m',
  jwksTimeout: '5s',
  upstreamTimeout: '30s',
  introspectionTimeout: '2s',
  introspectionMaxTtl: '5m',
  introspectionNegativeTtl: '30s',
  discoveryTimeout: '5s',
  memoryCacheEntries: 100_000,
  drainTimeout: '25s',
  asTokenLifetime: '10m',
  asThrottleFailures: 5,
  asThrottleClientFailures: 100,
  asThrottleWindow: '1m',
  identityHeaders: {
    client_id: 'X-Client-Id',
    subject: 'X-Subject',
    scopes: 'X-Scopes',
    issuer: 'X-Issuer',
  },
} as const

export const SCHEMA_ID = 'https://github.com/oauth-gateway/gateway/schema/gateway.schema.json'

const strict = { additionalProperties: false } as const

const DURATION_FORMAT = 'a duration: a whole number followed by ms, s, m or h ("500ms", "30s", "10m")'

function duration(defaultValue: string, doc?: string) {
  // `title` says what the field is for; `description` is what error messages quote.
  return Type.String({ pattern: '^[0-9]+(ms|s|m|h)$', default: defaultValue, description: DURATION_FORMAT, ...(doc ? { title: doc } : {}) })
}

const Listen = Type.String({
  pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$',
  description: 'host:port to listen on ("0.0.0.0:8080", "[::]:8080", "127.0.0.1:0")',
})

const HttpUrl = Type.String({
  pattern: '^https?://[^\\s/?#]+[^\\s#]*$',
  description: 'an absolute http(s) URL without fragment',
})

const Identifier = Type.String({
  pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$',
  description: 'an identifier: letters, digits, "_", ".", ":" and "-", at most 64 characters',
})

const HeaderName = Type.String({
  pattern: '^[A-Za-z0-9][A-Za-z0-9-]*$',
  description: 'an HTTP header name of letters, digits and "-"',
})

const Scope = Type.String({
  pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$',
  description: 'an OAuth scope token (RFC 6749 §3.3: printable ASCII without space, " and \\)',
})

/**
 * Method names a route may name: the IANA HTTP Method Registry, and the
 * extension methods Node's parser accepts (PURGE, NOTIFY, SUBSCRIBE…).
 */
export const METHODS = [
  'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'QUERY',
  'ACL', 'BASELINE-CONTROL', 'BIND', 'CHECKIN', 'CHECKOUT', 'COPY', 'LABEL', 'LINK', 'LOCK', 'MERGE', 'MKACTIVITY',
  'MKCALENDAR', 'MKCOL', 'MKREDIRECTREF', 'MKWORKSPACE', 'MOVE', 'ORDERPATCH', 'PROPFIND', 'PROPPATCH', 'REBIND',
  'REPORT', 'SEARCH', 'UNBIND', 'UNCHECKOUT', 'UNLINK', 'UNLOCK', 'UPDATE', 'UPDATEREDIRECTREF', 'VERSION-CONTROL',
  'PURGE', 'NOTIFY', 'SUBSCRIBE', 'UNSUBSCRIBE', 'M-SEARCH', 'SOURCE',
] as const
/** One `enum`, not a union of 45 literals: the validator stays small (a large one measurably slowed the request path through GC). */
const Method = Type.Unsafe<(typeof METHODS)[number]>({
  type: 'string',
  enum: [...METHODS],
  description: 'an HTTP method name from the IANA registry (GET, POST, PROPFIND, QUERY…), upper-case',
})

export const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const
const Algorithm = Type.Union(ALGORITHMS.map((a) => Type.Literal(a)), {
  description: `an asymmetric JWS algorithm: ${ALGORITHMS.join(', ')} (HMAC and "none" are never accepted)`,
})

export const VALIDATION_MODES = ['jwt', 'introspection', 'auto', 'jwt_and_introspection'] as const
const Validation = Type.Union(VALIDATION_MODES.map((m) => Type.Literal(m)), {
  description:
    'how tokens are authenticated: "jwt" (local verification only), "introspection" (RFC 7662 for every token), "auto" (JWTs locally, anything else introspected), "jwt_and_introspection" (JWTs verified locally and introspected to catch revocation; others introspected)',
})

const ScopeRequirement = Type.Object(
  {
    all_of: Type.Optional(Type.Array(Scope, { minItems: 1, uniqueItems: true, description: 'the token must carry every one of these scopes' })),
    any_of: Type.Optional(Type.Array(Scope, { minItems: 1, uniqueItems: true, description: 'the token must carry at least one of these scopes' })),
  },
  { ...strict, minProperties: 1, description: 'a scope requirement: all_of and/or any_of' },
)

const ProtectedAuth = Type.Object(
  {
    issuers: Type.Array(Identifier, { minItems: 1, uniqueItems: true, description: 'ids of the issuers whose tokens this route accepts' }),
    scopes: Type.Union([Type.Literal('none'), ScopeRequirement], {
      description: 'required scopes for every method: {all_of, any_of}, or "none" to accept any valid token',
    }),
    method_scopes: Type.Optional(
      Type.Record(Type.String({ pattern: '^[A-Z][A-Z-]*$' }), ScopeRequirement, {
        ...strict,
        propertyNames: { enum: [...METHODS], description: 'an HTTP method name from the IANA registry, upper-case' },
        description:
          'extra scope requirements per method, checked in addition to "scopes"; HEAD follows GET unless named. On a route without "methods", a method not named here other than GET and HEAD needs every rule named here',
      }),
    ),
    forward_authorization: Type.Optional(Type.Boolean({ description: 'forward the Authorization header to the upstream (default false)' })),
    validation: Type.Optional(Validation),
    claims: Type.Optional(ClaimRulesSchema),
    step_up: Type.Optional(StepUpSchema),
    binding: Type.Optional(BindingSchema),
  },
  { ...strict, description: 'a protected route: which issuers are trusted and which scopes are required' },
)

const Route = Type.Object(
  {
    id: Identifier,
    match: Type.Object(
      {
        path: Type.String({
          minLength: 1,
          description: 'a path pattern: static segments, ":name" for one segment, a final "*" for the rest ("/orders/:id/*")',
        }),
        methods: Type.Optional(Type.Array(Method, { minItems: 1, uniqueItems: true, description: 'methods this route serves (default: every method)' })),
        host: Type.Optional(
          Type.String({
            pattern: '^(\\*\\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$',
            description: 'a host name ("api.example.com") or a wildcard ("*.example.com"); without it the route serves every host',
          }),
        ),
      },
      { ...strict, description: 'which requests this route serves' },
    ),
    upstream: Identifier,
    auth: Type.Union([Type.Literal('public'), ProtectedAuth], {
      description: '"public" (no token needed; identity headers are still stripped) or {issuers, scopes}',
    }),
    strip_prefix: Type.Optional(
      Type.String({ pattern: '^/', description: 'a leading path removed before forwarding; must be the static start of match.path' }),
    ),
    max_body_bytes: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 2 ** 40, description: 'largest request body on this route, in bytes (default limits.max_body_bytes); larger is 413, refused from Content-Length before any byte is read' }),
    ),
    method_override: Type.Optional(
      Type.Union([Type.Literal('refuse'), Type.Literal('allow')], {
        default: 'refuse',
        description:
          'X-HTTP-Method-Override (and its variants) or _method in the query or form body: "refuse" (400, the default, on routes whose rules depend on the method) or "allow" (the request is authorized as both its method and the override, which must both be served by this route)',
      }),
    ),
    cors: Type.Optional(RouteCorsSchema),
    rate_limits: Type.Optional(RouteRateLimitsSchema),
    rate_limit_headers: Type.Optional(Type.Boolean({ description: 'answers carry RateLimit-Policy and RateLimit (default: rate_limits.headers)' })),
    websocket: Type.Optional(RouteWebSocketSchema),
    stream: Type.Optional(RouteStreamSchema),
  },
  { ...strict, description: 'a route rule' },
)

const StaticKey = Type.Object(
  {
    file: Type.String({ minLength: 1, description: 'a PEM public key (SPKI) or a JWK / JWK Set JSON file, relative to the config file' }),
    kid: Type.Optional(Type.String({ minLength: 1, description: 'key id for a PEM key (JWK files carry their own)' })),
    alg: Type.Optional(Algorithm),
  },
  strict,
)

const Introspection = Type.Object(
  {
    endpoint: Type.Optional(HttpUrl),
    client_id: Type.String({ minLength: 1, description: "the gateway's own client id at the authorization server" }),
    client_secret: Type.String({ minLength: 1, description: 'its secret; use ${ENV} rather than writing it here' }),
    auth_method: Type.Optional(
      Type.Union([Type.Literal('client_secret_basic'), Type.Literal('client_secret_post')], {
        default: 'client_secret_basic',
        description: 'how the gateway authenticates to the endpoint: client_secret_basic or client_secret_post',
      }),
    ),
    timeout: Type.Optional(duration(DEFAULTS.introspectionTimeout, 'time allowed for one introspection call')),
    max_ttl: Type.Optional(duration(DEFAULTS.introspectionMaxTtl, 'longest time an active result is cached (never beyond the token exp)')),
    negative_ttl: Type.Optional(duration(DEFAULTS.introspectionNegativeTtl, 'how long an inactive result is cached')),
    require_audience: Type.Optional(
      Type.Boolean({ default: true, description: 'refuse active responses without an "aud" naming one of the audiences (default true)' }),
    ),
  },
  { ...strict, description: 'RFC 7662 token introspection' },
)

const Issuer = Type.Object(
  {
    id: Identifier,
    issuer: Type.String({ minLength: 1, description: 'the exact "iss" value of this issuer\'s tokens' }),
    discovery: Type.Optional(
      Type.Boolean({ description: 'find jwks_uri and the introspection endpoint in the RFC 8414 metadata at {issuer}/.well-known/oauth-authorization-server' }),
    ),
    jwks_uri: Type.Optional(HttpUrl),
    keys: Type.Optional(Type.Array(StaticKey, { minItems: 1, description: 'static verification keys' })),
    audiences: Type.Array(Type.String({ minLength: 1 }), {
      minItems: 1,
      uniqueItems: true,
      description: 'accepted "aud" values; a token must name at least one',
    }),
    algorithms: Type.Optional(Type.Array(Algorithm, { minItems: 1, uniqueItems: true, default: [...DEFAULTS.algorithms] })),
    clock_skew: Type.Optional(duration(DEFAULTS.clockSkew, 'tolerated clock difference for exp, nbf and iat')),
    require_typ: Type.Optional(Type.Literal('at+jwt', { description: 'require the RFC 9068 header typ "at+jwt"' })),
    scope_claims: Type.Optional(
      Type.Array(Type.String({ minLength: 1, description: 'a claim path: dotted names, a name with dots in double quotes ("https://corp/roles")' }), {
        minItems: 1,
        uniqueItems: true,
        default: ['scope', 'scp'],
        description:
          'where this issuer\'s tokens carry what routes check as scopes, merged: scope, scp (the default), roles (Entra ID app tokens), permissions (Auth0 RBAC), realm_access.roles or resource_access.<client>.roles (Keycloak)',
      }),
    ),
    allow_insecure_http: Type.Optional(
      Type.Boolean({ description: 'allow http:// key, discovery and introspection URLs on non-loopback hosts (they can then be forged in transit)' }),
    ),
    introspection: Type.Optional(Introspection),
    validation: Type.Optional(Validation),
    binding: Type.Optional(BindingSchema),
    jwks: Type.Optional(
      Type.Object(
        {
          cooldown: Type.Optional(duration(DEFAULTS.jwksCooldown, 'least time between refetches caused by an unknown kid')),
          max_age: Type.Optional(duration(DEFAULTS.jwksMaxAge, 'refresh the key set in the background after this age')),
          timeout: Type.Optional(duration(DEFAULTS.jwksTimeout, 'time allowed for one JWKS fetch')),
        },
        strict,
      ),
    ),
  },
  { ...strict, description: 'a trusted token issuer' },
)

const HttpUpstream = Type.Object(
  {
    url: HttpUrl,
    timeout: Type.Optional(duration(DEFAULTS.upstreamTimeout, 'time allowed for the response headers, and between body chunks')),
    preserve_host: Type.Optional(Type.Boolean({ description: 'send the client\'s Host header instead of the upstream\'s (default false)' })),
    http2: Type.Optional(Type.Boolean({ description: 'speak HTTP/2 to this upstream: h2 by ALPN for https://, h2c with prior knowledge for http:// (gRPC services); default HTTP/1.1' })),
    assertion: Type.Optional(UpstreamAssertionSchema),
    tls: Type.Optional(UpstreamTlsSchema),
    ...UpstreamLimitFields,
  },
  { ...strict, description: 'a backend service' },
)

const EchoUpstream = Type.Object(
  {
    echo: Type.Literal(true, { description: 'answer with the method, path, query and headers a service behind this route would receive' }),
    assertion: Type.Optional(UpstreamAssertionSchema),
  },
  { ...strict, description: 'the built-in echo responder' },
)

const Upstream = Type.Union([HttpUpstream, EchoUpstream], { description: 'a backend {url, timeout, preserve_host} or the built-in {echo: true}' })

const SecretHash = Type.String({
  pattern: '^\\$scrypt\\$ln=[0-9]+,r=[0-9]+,p=[0-9]+\\$[A-Za-z0-9_-]+\\$[A-Za-z0-9_-]+$',
  description: 'a secret hash printed by `gateway hash-secret` ($scrypt$ln=…,r=…,p=…$salt$hash)',
})

const AsClient = Type.Object(
  {
    client_id: Type.String({ pattern: '^[\\x21-\\x7E]{1,128}$', description: 'the client identifier (printable ASCII, no spaces)' }),
    secret_hash: SecretHash,
    scopes: Type.Array(Scope, { uniqueItems: true, description: 'scopes the client may request' }),
    default_scopes: Type.Optional(Type.Array(Scope, { uniqueItems: true, description: 'scopes granted when the request names none (default: none)' })),
    audiences: Type.Array(Type.String({ minLength: 1 }), { minItems: 1, uniqueItems: true, description: 'the aud of its tokens' }),
    token_lifetime: Type.Optional(duration(DEFAULTS.asTokenLifetime, 'lifetime of its access tokens')),
    introspect: Type.Optional(Type.Boolean({ description: 'may call the introspection endpoint (default false)' })),
  },
  { ...strict, description: 'a registered client' },
)

const AuthorizationServer = Type.Object(
  {
    issuer: Type.String({ pattern: '^https?://[^\\s/?#]+(/[^\\s?#]*)?$', description: 'its issuer URL; its endpoints are served under this URL\'s path on the gateway listener' }),
    keys: Type.Optional(
      Type.Array(
        Type.Object(
          {
            file: Type.String({ minLength: 1, description: 'a private key: PKCS#8 PEM or a private JWK, relative to the config file' }),
            kid: Type.String({ minLength: 1 }),
            alg: Type.Optional(Type.Union([Type.Literal('ES256'), Type.Literal('EdDSA'), Type.Literal('RS256')])),
          },
          strict,
        ),
        { minItems: 1, description: 'signing keys; the first signs, all are published (for rotation). Without keys one is generated at start (development only)' },
      ),
    ),
    token_lifetime: Type.Optional(duration(DEFAULTS.asTokenLifetime, 'default lifetime of access tokens')),
    throttle: Type.Optional(
      Type.Object(
        {
          failures: Type.Optional(
            Type.Integer({ minimum: 1, maximum: 10_000, default: DEFAULTS.asThrottleFailures, description: 'failed authentications per client id and source address in a window before that pair is throttled' }),
          ),
          client_failures: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 1_000_000,
              default: DEFAULTS.asThrottleClientFailures,
              description: 'failed authentications per client id from all addresses together in a window before the client id is throttled (the ceiling on distributed guessing)',
            }),
          ),
          window: Type.Optional(duration(DEFAULTS.asThrottleWindow, 'the window failures are counted in, and how long a throttled client id waits')),
        },
        strict,
      ),
    ),
    clients: Type.Array(AsClient, { description: 'registered clients (Client Credentials grant)' }),
  },
  { ...strict, description: 'the built-in Client Credentials authorization server' },
)

const ProtectedResource = Type.Object(
  {
    resource: HttpUrl,
    resource_name: Type.Optional(Type.String({ minLength: 1 })),
    authorization_servers: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { description: 'issuer URLs; default: every configured issuer' })),
  },
  { ...strict, description: 'RFC 9728 protected resource metadata, served at /.well-known/oauth-protected-resource and named in 401 challenges' },
)

const TrustProxy = Type.Union(
  [
    Type.Literal(false),
    Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: 'addresses or CIDR ranges of trusted proxies' }),
  ],
  {
    description:
      'false (the default), or the addresses and CIDR ranges of the proxies in front ("10.0.0.0/8", "loopback"): X-Forwarded-For/-Host/-Proto are believed only as far as the hops are inside them. true and hop counts are not accepted: they believe whoever connects directly',
  },
)

export const ConfigSchema = Type.Object(
  {
    $schema: Type.Optional(Type.String()),
    server: Type.Optional(
      Type.Object(
        {
          listen: Type.Optional(
            Type.Union([Type.String(Listen), Type.Literal(false)], { default: DEFAULTS.listen, description: 'host:port of the plain HTTP listener, or false for none (with server.tls)' }),
          ),
          tls: Type.Optional(ListenerTlsSchema),
          http2: Type.Optional(Http2Schema),
          client_certificate_header: Type.Optional(CertificateHeaderSchema),
          trust_proxy: Type.Optional(TrustProxy),
          realm: Type.Optional(Type.String({ pattern: '^[\\x20\\x21\\x23-\\x5B\\x5D-\\x7E]+$', default: DEFAULTS.realm, description: 'the realm of Bearer challenges' })),
          body_limit: Type.Optional(Type.Integer({ minimum: 1, default: DEFAULTS.bodyLimit, description: 'largest form-encoded body read to look for tokens, in bytes; other bodies are streamed' })),
          drain_timeout: Type.Optional(duration(DEFAULTS.drainTimeout, 'on SIGTERM, how long requests in flight may take to finish')),
          case_insensitive_paths: Type.Optional(
            Type.Boolean({
              default: false,
              description:
                'fold the letters of request paths to lower case before matching, and forward the folded path: set it when any upstream treats paths case-insensitively (IIS, some Spring setups, case-insensitive file systems), or "/API/Admin" reaches what "/api/admin" rules guard',
            }),
          ),
          workers: Type.Optional(
            Type.Union([Type.Integer({ minimum: 1, maximum: 256 }), Type.Literal('auto')], {
              default: 1,
              description: 'processes serving the listener (node:cluster): a number, or "auto" for one per whole CPU the process may use (its CPU affinity, bounded by a cgroup CPU quota); they share nothing but Redis',
            }),
          ),
        },
        strict,
      ),
    ),
    admin: Type.Optional(
      Type.Object(
        { listen: Type.Optional(Type.String({ ...Listen, default: DEFAULTS.adminListen })) },
        { ...strict, description: 'the admin listener: /metrics, /healthz, /readyz (keep it off public networks)' },
      ),
    ),
    limits: Type.Optional(LimitsSchema),
    identity_headers: Type.Optional(
      Type.Object(
        {
          client_id: Type.Optional(Type.String({ ...HeaderName, default: DEFAULTS.identityHeaders.client_id, description: 'carries client_id (else azp)' })),
          subject: Type.Optional(Type.String({ ...HeaderName, default: DEFAULTS.identityHeaders.subject, description: 'carries sub' })),
          scopes: Type.Optional(Type.String({ ...HeaderName, default: DEFAULTS.identityHeaders.scopes, description: 'carries the granted scopes, space-separated' })),
          issuer: Type.Optional(Type.String({ ...HeaderName, default: DEFAULTS.identityHeaders.issuer, description: 'carries iss' })),
          claims: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z0-9_.:-]+$' }), HeaderName, { ...strict, description: 'more claims to forward: claim name → header name' })),
          strip_request_headers: Type.Optional(
            Type.Array(
              Type.String({
                pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*\\*?$',
                description: 'a header name, or a name prefix ending in "*" ("X-Internal-*")',
              }),
              {
                uniqueItems: true,
                description:
                  'more request headers never forwarded as the client sent them, on every route (in every spelling a backend may fold into the same name); added to the built-in families, which cannot be removed',
              },
            ),
          ),
        },
        { ...strict, description: 'headers the gateway sets from the verified token (and always strips from requests)' },
      ),
    ),
    cache: Type.Optional(
      Type.Object(
        {
          redis: Type.Optional(RedisSchema),
          memory: Type.Optional(
            Type.Object(
              { max_entries: Type.Optional(Type.Integer({ minimum: 1, default: DEFAULTS.memoryCacheEntries, description: 'bound of the in-process token cache' })) },
              strict,
            ),
          ),
        },
        { ...strict, description: 'token result caches' },
      ),
    ),
    cors: Type.Optional(CorsSchema),
    identity_assertion: Type.Optional(IdentityAssertionSchema),
    revocation: Type.Optional(RevocationSchema),
    rate_limits: Type.Optional(RateLimitsSchema),
    tracing: Type.Optional(TracingSchema),
    dpop: Type.Optional(DpopSchema),
    issuers: Type.Optional(Type.Array(Issuer, { description: 'trusted token issuers' })),
    authorization_server: Type.Optional(AuthorizationServer),
    protected_resource: Type.Optional(ProtectedResource),
    upstreams: Type.Record(Identifier, Upstream, { ...strict, minProperties: 1, description: 'backend services by id' }),
    routes: Type.Array(Route, { minItems: 1, description: 'route rules; precedence is by specificity, not by order' }),
  },
  { ...strict, $id: SCHEMA_ID, title: 'OAuth gateway configuration' },
)

export type Config = Static<typeof ConfigSchema>
export type RouteConfig = Static<typeof Route>
export type IssuerConfig = Static<typeof Issuer>
export type ScopeRequirementConfig = Static<typeof ScopeRequirement>
export type UpstreamConfig = Static<typeof Upstream>
export type AuthorizationServerConfig = Static<typeof AuthorizationServer>
export type ValidationMode = (typeof VALIDATION_MODES)[number]

/** The schema as plain JSON (TypeBox's symbol keys dropped). */
export function jsonSchema(schema: TSchema = ConfigSchema): Record<string, unknown> {
  return JSON.parse(JSON.stringify({ $schema: 'http://json-schema.org/draft-07/schema#', ...schema })) as Record<string, unknown>
}
