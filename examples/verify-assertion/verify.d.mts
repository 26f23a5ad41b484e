import type { IncomingMessage } from 'node:http'

/** See verify.mjs: verifies the X-Gateway-Assertion of a request, returning its claims or throwing. */
export function assertionVerifier(options: { jwksUrl: string; issuer: string; audience: string; cacheMaxAge?: number }): (req: IncomingMessage) => Promise<Record<string, unknown>>
