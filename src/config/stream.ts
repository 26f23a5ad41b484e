import { Type, type Static } from '@sinclair/typebox'
import { parseDuration } from './duration.js'
import type { FieldPath } from './errors.js'
import type { StreamPolicy } from '../pipeline/forward/targets.js'

/**
 * A route's `stream`: long answers (server-sent events, long polls, large
 * downloads). The upstream's `timeout` still bounds the wait for the
 * answer's head; here the silence allowed between chunks of the body, and
 * how long an answer may stream in all. Chunks are relayed as they come,
 * never buffered.
 */

const strict = { additionalProperties: false } as const

export const RouteStreamSchema = Type.Object(
  {
    idle_timeout: Type.Optional(Type.String({ pattern: '^[0-9]+(ms|s|m|h)$', description: 'longest silence between chunks of the answer (default: the upstream\'s timeout; 1s to 24h); SSE servers send a comment line as a heartbeat well within it' })),
    max_duration: Type.Optional(Type.String({ pattern: '^[0-9]+(ms|s|m|h)$', description: 'longest an answer may stream; then it is ended (an SSE client reconnects) (1s to 24h; default: no bound but idle_timeout)' })),
  },
  { ...strict, description: 'long answers (server-sent events): silence allowed between chunks, and a bound on the whole answer, apart from the time to the first byte' },
)


export function compileStream(c: Static<typeof RouteStreamSchema> | undefined, at: FieldPath, report: (path: FieldPath, message: string) => void): StreamPolicy | undefined {
  if (c === undefined) return undefined
  const ms = (value: string | undefined, name: string) => {
    if (value === undefined) return undefined
    const v = parseDuration(value)
    if (v < 1000 || v > 86_400_000) report([...at, name], `must be between 1s and 24h, got ${value}`)
    return v
  }
  return Object.freeze({ idleMs: ms(c.idle_timeout, 'idle_timeout'), maxMs: ms(c.max_duration, 'max_duration') })
}
