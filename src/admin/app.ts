import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Gateway } from '../app.js'
import { readiness } from './readiness.js'
import { registerRevocationApi } from './revocations.js'

/**
 * The admin listener's app (its own port, 127.0.0.1 by default):
 * `/healthz` (the process answers), `/readyz` (it can serve: 200 when ready
 * or degraded, 503 when not ready or draining), `/metrics` (Prometheus), and
 * `/.well-known/gateway-jwks.json` (the keys of identity assertions, when
 * configured: services verify assertions with it).
 */
export function buildAdmin(gateway: Gateway, options: { logger?: FastifyBaseLogger; isDraining?: () => boolean } = {}): FastifyInstance {
  // Probes and scrapes come every few seconds: they are not logged.
  const admin = Fastify({ loggerInstance: options.logger, logController: new LogController({ disableRequestLogging: true }) })
  admin.get('/healthz', async () => ({ status: 'ok' }))
  admin.get('/readyz', async (_request, reply) => {
    const state = readiness(gateway)
    const draining = options.isDraining?.() ?? false
    const status = draining ? 'not_ready' : state.status
    return reply.code(status === 'not_ready' ? 503 : 200).send({ ...state, status, draining })
  })
  admin.get('/.well-known/gateway-jwks.json', async (_request, reply) => {
    const keys = gateway.current.assertionKeys
    if (keys === undefined) return reply.code(404).send({ error: 'not_found', error_description: 'identity assertions are not configured' })
    // Short-lived in caches: a key added for rotation reaches services within a minute.
    return reply.header('cache-control', 'public, max-age=60').type('application/jwk-set+json').send(keys)
  })
  registerRevocationApi(admin, {
    settings: () => gateway.current.revocation,
    issuers: () => new Map([...gateway.current.issuers].map(([id, i]) => [id, i.issuer])),
    apply: (denial) => void gateway.current.revocations.apply(denial),
    list: () => gateway.current.revocations.list(),
  })
  admin.get('/metrics', async (_request, reply) => {
    const text = await gateway.metrics.registry.metrics()
    return reply.type(gateway.metrics.registry.contentType).send(text)
  })
  return admin
}
