import { resolve } from 'node:path'
import { Type, type Static } from '@sinclair/typebox'
import { generateSigningKey, loadSigningKey, type SigningKey } from '../authorization-server/signing-keys.js'
import { parseClaimPath, type ClaimPath } from '../pipeline/authn/claim-path.js'
import { AssertionSigner, type UpstreamAssertion } from '../pipeline/assert/identity-assertion.js'
import { parseDuration } from './duration.js'
import type { FieldPath } from './errors.js'

/**
 * The `identity_assertion` section (the gateway as the signer of short-lived
 * JWTs about each request's principal) and an upstream's `assertion` (that
 * it gets one). Schema and compile step side by side; signing is in
 * src/pipeline/assert/.
 */

const strict = { additionalProperties: false } as const

export const ASSERTION_DEFAULTS = {
  header: 'X-Gateway-Assertion',
  lifetime: '60s',
} as const

/** Longest lifetime accepted: an assertion is for one hop, now. */
const MAX_LIFETIME_MS = 5 * 60 * 1000

export const IdentityAssertionSchema = Type.Object(
  {
    issuer: Type.String({ minLength: 1, description: 'the "iss" of the assertions (this gateway: a URL or a name services check)' }),
    keys: Type.Optional(
      Type.Array(
        Type.Object(
          {
            file: Type.String({ minLength: 1, description: 'a private key (Ed25519 or P-256): PKCS#8 PEM or a private JWK, relative to the config file' }),
            kid: Type.String({ pattern: '^[\\x21-\\x7E]{1,64}$' }),
          },
          strict,
        ),
        {
          minItems: 1,
          description: 'the first key signs; every key is published in the JWKS (add the next key second, then move it first once services have fetched it; drop the old one after the lifetime has passed). Without keys an Ed25519 key is generated at start (development only)',
        },
      ),
    ),
    lifetime: Type.Optional(Type.String({ pattern: '^[0-9]+(ms|s|m|h)$', default: ASSERTION_DEFAULTS.lifetime, description: 'exp - iat (at most 5m, and never past the token\'s exp)' })),
    claims: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { uniqueItems: true, description: 'claims of the token copied into assertions, as claim paths ("email", "realm_access.roles")' })),
  },
  { ...strict, description: 'signed identity assertions for upstreams that do not trust the network; the admin listener publishes the keys at /.well-known/gateway-jwks.json' },
)

export const UpstreamAssertionSchema = Type.Union(
  [
    Type.Literal(true),
    Type.Object(
      {
        audience: Type.Optional(Type.String({ minLength: 1, description: 'the "aud" (default: the upstream\'s id)' })),
        header: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9-]*$', default: ASSERTION_DEFAULTS.header, description: 'the header carrying it; "Authorization" sends "Bearer <assertion>" in place of the client\'s token' })),
        bind_request: Type.Optional(Type.Boolean({ default: false, description: 'bind each assertion to the method, path and query sent (htm, htp, htq): signed per request' })),
      },
      strict,
    ),
  ],
  { description: 'send this upstream a signed identity assertion on protected routes (identity_assertion configures the signer)' },
)

export type IdentityAssertionConfig = Static<typeof IdentityAssertionSchema>
export type UpstreamAssertionConfig = Static<typeof UpstreamAssertionSchema>

type Report = (path: FieldPath, message: string, atKey?: boolean) => void

/** Builds the signer: keys read (or one generated, with a notice), claim paths parsed. */
export async function compileAssertionSigner(
  config: IdentityAssertionConfig | undefined,
  baseDir: string,
  report: Report,
  notices: string[],
  files: string[],
  now?: () => number,
): Promise<AssertionSigner | undefined> {
  if (config === undefined) return undefined
  const keys: SigningKey[] = []
  for (const [i, spec] of (config.keys ?? []).entries()) {
    const file = resolve(baseDir, spec.file)
    files.push(file)
    try {
      const key = await loadSigningKey(file, spec.kid)
      if (key.alg === 'RS256') report(['identity_assertion', 'keys', i, 'file'], 'assertions are signed with Ed25519 or P-256 keys (RSA signing costs too much per request)')
      else keys.push(key)
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      report(['identity_assertion', 'keys', i, 'file'], e.code === 'ENOENT' ? `key file not found: ${file}` : `unusable key file: ${e.message}`)
    }
  }
  if (config.keys === undefined) {
    keys.push(generateSigningKey('ed25519'))
    notices.push('identity_assertion has no keys: an Ed25519 key was generated for this process (development only; services must refetch the JWKS after every restart)')
  }
  const kids = new Set<string>()
  for (const [i, k] of keys.entries()) {
    if (kids.has(k.kid)) report(['identity_assertion', 'keys', i, 'kid'], `duplicate kid "${k.kid}"`)
    kids.add(k.kid)
  }
  const lifetimeMs = parseDuration(config.lifetime ?? ASSERTION_DEFAULTS.lifetime)
  if (lifetimeMs < 1000 || lifetimeMs > MAX_LIFETIME_MS) report(['identity_assertion', 'lifetime'], 'must be between 1s and 5m')
  const claims: ClaimPath[] = []
  for (const [i, text] of (config.claims ?? []).entries()) {
    const path = parseClaimPath(text)
    if (path) claims.push(path)
    else report(['identity_assertion', 'claims', i], `"${text}" is not a claim path (dotted names; a name with dots in double quotes)`)
  }
  if (keys.length === 0) return undefined
  return new AssertionSigner(config.issuer, keys, Math.floor(lifetimeMs / 1000), claims, now)
}

/** An upstream's assertion settings, checked against the signer. */
export function compileUpstreamAssertion(
  config: UpstreamAssertionConfig | undefined,
  upstreamId: string,
  signer: AssertionSigner | undefined,
  signerDeclared: boolean,
  report: Report,
): UpstreamAssertion | undefined {
  if (config === undefined) return undefined
  if (!signer) {
    if (!signerDeclared) report(['upstreams', upstreamId, 'assertion'], 'needs the identity_assertion section (its issuer and keys)')
    return undefined
  }
  const options = config === true ? {} : config
  return Object.freeze({
    signer,
    audience: options.audience ?? upstreamId,
    header: (options.header ?? ASSERTION_DEFAULTS.header).toLowerCase(),
    bindRequest: options.bind_request ?? false,
  })
}

/** The claim names assertions copy (cached principals keep them). */
export function assertionClaimNames(config: IdentityAssertionConfig | undefined): string[] {
  return (config?.claims ?? []).flatMap((text) => parseClaimPath(text)?.slice(0, 1) ?? [])
}
