import { createHash } from 'node:crypto'
import { Type, type Static } from '@sinclair/typebox'
import { parseDuration } from './duration.js'

/**
 * The `revocation` section: the operator API on the admin listener
 * (authenticated by a bearer token, never open by default) and how long
 * denials by subject or client are kept. Schema and compile step side by
 * side; denials are checked in src/pipeline/authn/revocation.ts and shared
 * through Redis by src/cache/revocation-bus.ts.
 */

const strict = { additionalProperties: false } as const

export const REVOCATION_DEFAULTS = { maxTokenLifetime: '24h' } as const

export const RevocationSchema = Type.Object(
  {
    api_token: Type.Optional(
      Type.String({
        minLength: 32,
        description: 'a bearer token (at least 32 characters, from ${ENV}) for POST/GET /revocations on the admin listener; without it the API answers 404',
      }),
    ),
    signals: Type.Optional(
      Type.Object(
        {
          path: Type.Optional(Type.String({ pattern: '^/[A-Za-z0-9/_.-]*$', default: '/ssf/events', description: 'where transmitters push Security Event Tokens (RFC 8935), on the gateway listener' })),
          transmitters: Type.Array(
            Type.Object(
              {
                issuer: Type.String({ minLength: 1, description: 'the "iss" of its SETs' }),
                jwks_uri: Type.String({ pattern: '^https?://', description: 'its keys' }),
                audience: Type.String({ minLength: 1, description: 'the "aud" its SETs name this receiver by' }),
                algorithms: Type.Optional(Type.Array(Type.String({ pattern: '^(RS|PS|ES)(256|384|512)$|^EdDSA$' }), { minItems: 1, uniqueItems: true })),
              },
              strict,
            ),
            { minItems: 1 },
          ),
        },
        { ...strict, description: 'Shared Signals (OpenID SSF / CAEP): session-revoked and credential-change events deny the subject\'s earlier tokens' },
      ),
    ),
    max_token_lifetime: Type.Optional(
      Type.String({ pattern: '^[0-9]+(ms|s|m|h)$', default: REVOCATION_DEFAULTS.maxTokenLifetime, description: 'the longest life of any token the gateway accepts: how long a denial by token, subject or client is kept' }),
    ),
  },
  { ...strict, description: 'revocation: the operator API, and how long its denials are kept' },
)

export type RevocationConfig = Static<typeof RevocationSchema>

export interface RevocationSettings {
  /** SHA-256 of the API token (compared in constant time), when the API is on. */
  readonly apiTokenDigest: Buffer | undefined
  readonly maxTokenLifetimeSeconds: number
}

export function compileRevocation(config: RevocationConfig | undefined): RevocationSettings {
  return Object.freeze({
    apiTokenDigest: config?.api_token ? createHash('sha256').update(config.api_token).digest() : undefined,
    maxTokenLifetimeSeconds: Math.ceil(parseDuration(config?.max_token_lifetime ?? REVOCATION_DEFAULTS.maxTokenLifetime) / 1000),
  })
}
