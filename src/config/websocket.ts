import { Type, type Static } from '@sinclair/typebox'
import { parseDuration } from './duration.js'
import type { FieldPath } from './errors.js'
import type { WebSocketPolicy } from '../pipeline/websocket/tunnel.js'

/**
 * A route's `websocket`: whether `Upgrade: websocket` requests are tunnelled
 * to its upstream once allowed, and the bounds of a tunnel. Schema and
 * compile step side by side; the tunnel is src/pipeline/websocket/.
 */

const strict = { additionalProperties: false } as const

export const WEBSOCKET_DEFAULTS = { idleTimeout: '5m', maxDuration: '24h' } as const

export const RouteWebSocketSchema = Type.Union(
  [
    Type.Boolean(),
    Type.Object(
      {
        idle_timeout: Type.Optional(Type.String({ pattern: '^[0-9]+(ms|s|m|h)$', default: WEBSOCKET_DEFAULTS.idleTimeout, description: 'close a tunnel silent this long, 1001 (1s to 24h)' })),
        max_duration: Type.Optional(Type.String({ pattern: '^[0-9]+(ms|s|m|h)$', default: WEBSOCKET_DEFAULTS.maxDuration, description: 'close a tunnel this old, 1001 (1s to 24h)' })),
        close_on_token_expiry: Type.Optional(Type.Boolean({ default: true, description: 'close the tunnel (1008, after a close handshake) when the token that opened it expires' })),
        subprotocol_token: Type.Optional(
          Type.Boolean({ default: false, description: 'accept the token as a Sec-WebSocket-Protocol "base64url.bearer.authorization.k8s.io.<token>" (browsers cannot set Authorization); taken out before forwarding' }),
        ),
      },
      strict,
    ),
  ],
  { description: 'tunnel WebSocket upgrades (after the same checks as any request): true, or its bounds' },
)

export type RouteWebSocketConfig = Static<typeof RouteWebSocketSchema>

export function compileWebSocket(c: RouteWebSocketConfig | undefined, at: FieldPath, report: (path: FieldPath, message: string) => void): WebSocketPolicy | undefined {
  if (c === undefined || c === false) return undefined
  const o = c === true ? {} : c
  const ms = (value: string, name: string) => {
    const v = parseDuration(value)
    if (v < 1000 || v > 86_400_000) report([...at, name], `must be between 1s and 24h, got ${value}`)
    return v
  }
  return Object.freeze({
    idleMs: ms(o.idle_timeout ?? WEBSOCKET_DEFAULTS.idleTimeout, 'idle_timeout'),
    maxMs: ms(o.max_duration ?? WEBSOCKET_DEFAULTS.maxDuration, 'max_duration'),
    closeOnExpiry: o.close_on_token_expiry ?? true,
    subprotocolToken: o.subprotocol_token ?? false,
  })
}
