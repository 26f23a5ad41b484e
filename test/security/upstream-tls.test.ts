import { createHash, X509Certificate } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { compileConfig } from '../../src/config/compile.js'
import { parseConfig } from '../../src/config/load.js'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { makeKey, sign, type TestKey } from '../helpers/keys.js'
import { startJwksServer, type JwksServer } from '../helpers/jwks.js'
import { TestCa, type Issued } from '../helpers/pki.js'
import { bearer, send } from '../helpers/servers.js'

// Upstream TLS: the upstream is verified (CA, validity, name, optional pins)
// and the gateway presents its client certificate. Every failure is a 502
// with reason upstream_tls_failed, counted by upstream and reason; a client
// certificate rotated on disk is taken up with no failed request.

const ISS = 'https://idp.test.example'
let ca: TestCa
let rogue: TestCa
let clientCa: TestCa
let jwks: JwksServer
let key: TestKey
let g: TestGateway
const servers: Server[] = []
const seenClients: string[] = []

async function upstream(server: Issued, options: { maxVersion?: 'TLSv1.2' } = {}): Promise<string> {
  const s = createServer({ ...server, ca: clientCa.pem, requestCert: true, rejectUnauthorized: true, ...options }, (req, res) => {
    const peer = (req.socket as TLSSocket).getPeerCertificate()
    seenClients.push(String(peer.subject?.CN ?? '-'))
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, client: peer.subject?.CN }))
  })
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  servers.push(s)
  return `https://127.0.0.1:${(s.address() as AddressInfo).port}`
}

const pin = (pem: string) => createHash('sha256').update(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' })).digest('base64')

let urls: Record<string, string>
let files: Record<string, string>
function config(extra = ''): string {
  const tls = (name = 'orders.internal', more = '') => `{ ca: ca.pem, cert: client.pem, key: client-key.pem, server_name: ${name}${more} }`
  return `
upstreams:
  good: { url: "${urls.good}", tls: ${tls()} }
  pinned: { url: "${urls.good}", tls: ${tls('orders.internal', `, pin_sha256: ["${pin(files['server.pem']!)}"]`)} }
  pin-mismatch: { url: "${urls.good}", tls: ${tls('orders.internal', `, pin_sha256: ["${pin(files['other.pem']!)}"]`)} }
  rogue: { url: "${urls.rogue}", tls: ${tls()} }
  expired: { url: "${urls.expired}", tls: ${tls()} }
  wrong-name: { url: "${urls.good}", tls: ${tls('billing.internal')} }
  no-client-cert: { url: "${urls.tls12}", tls: { ca: ca.pem, server_name: orders.internal } }
issuers:
  - { id: idp, issuer: ${ISS}, jwks_uri: ${jwks.jwksUri}, audiences: [api] }
routes:
${['good', 'pinned', 'pin-mismatch', 'rogue', 'expired', 'wrong-name', 'no-client-cert'].map((u) => `  - { id: ${u}, match: { path: /${u}/* }, upstream: ${u}, auth: { issuers: [idp], scopes: none } }`).join('\n')}
${extra}`
}

beforeAll(async () => {
  ca = await TestCa.create('Upstream CA')
  rogue = await TestCa.create('Rogue CA')
  clientCa = await TestCa.create('Client CA')
  key = await makeKey('ES256')
  jwks = await startJwksServer([key.publicJwk])
  const server = await ca.issue({ cn: 'orders', dns: ['orders.internal'] })
  const other = await ca.issue({ cn: 'other', dns: ['orders.internal'] })
  const client = await clientCa.issue({ cn: 'gateway-1', client: true })
  urls = {
    good: await upstream(server),
    rogue: await upstream(await rogue.issue({ cn: 'orders', dns: ['orders.internal'] })),
    // Under TLS 1.2 a refused client certificate fails the handshake; under TLS 1.3 the upstream
    // closes the connection after it, which reads as upstream_unavailable (README, "Upstream TLS").
    tls12: await upstream(server, { maxVersion: 'TLSv1.2' }),
    expired: await upstream(await ca.issue({ cn: 'orders', dns: ['orders.internal'], from: new Date(Date.now() - 10 * 86400_000), to: new Date(Date.now() - 86400_000) })),
  }
  files = { 'ca.pem': ca.pem, 'client.pem': client.cert, 'client-key.pem': client.key, 'server.pem': server.cert, 'other.pem': other.cert }
  g = await startGateway(config(), files)
})
afterAll(async () => {
  await g?.close()
  for (const s of servers) s.close()
  await jwks?.close()
})

const token = () => sign(key, { iss: ISS, aud: 'api', sub: 'u', exp: Math.floor(Date.now() / 1000) + 600 })

describe('upstream TLS', () => {
  it('verifies the upstream and presents the client certificate', async () => {
    for (const path of ['/good/1', '/pinned/1']) {
      const res = await send(g.url, { path, headers: [bearer(await token())] })
      expect(res.status, path).toBe(200)
      expect(res.json()).toMatchObject({ client: 'gateway-1' })
    }
  })

  it.each([
    ['rogue', 'untrusted'],
    ['expired', 'expired'],
    ['wrong-name', 'name_mismatch'],
    ['pin-mismatch', 'pin_mismatch'],
    ['no-client-cert', 'handshake'],
  ])('%s: 502 upstream_tls_failed, counted as %s', async (upstreamId, reason) => {
    const before = g.gateway.metrics.upstreamTlsFailures.value([upstreamId, reason])
    const res = await send(g.url, { path: `/${upstreamId}/1`, headers: [bearer(await token())] })
    expect(res.status).toBe(502)
    expect(res.json()).toMatchObject({ error: 'bad_gateway' })
    expect((await g.requestLog(res.headers['x-request-id'])).reason).toBe('upstream_tls_failed')
    expect(g.gateway.metrics.upstreamTlsFailures.value([upstreamId, reason])).toBe(before + 1)
  })

  it('refuses TLS settings it cannot use, located', async () => {
    await expect(compileConfig(parseConfig(`
upstreams: { u: { url: "http://127.0.0.1:1", tls: { ca: ca.pem } }, v: { url: "https://127.0.0.1:1", tls: { cert: client.pem } }, w: { url: "https://127.0.0.1:1", tls: { cert: client.pem, key: other-key.pem } } }
routes: [{ id: r, match: { path: /r }, upstream: u, auth: public }, { id: s, match: { path: /s }, upstream: v, auth: public }, { id: t, match: { path: /t }, upstream: w, auth: public }]
`, `${g.dir}/bad.yaml`))).rejects.toThrow(/need an https:\/\/ upstream URL[\s\S]*needs both cert and key[\s\S]*other-key.pem/)
  })

  it('takes up a client certificate rotated on disk with no failed request', async () => {
    const t = await token()
    const failures: number[] = []
    const stop = { now: false }
    const load = (async () => {
      while (!stop.now) {
        const res = await send(g.url, { path: '/good/1', headers: [bearer(t)] })
        if (res.status !== 200) failures.push(res.status)
      }
    })()
    await new Promise((r) => setTimeout(r, 100))
    const next = await clientCa.issue({ cn: 'gateway-2', client: true })
    await writeFile(`${g.dir}/client.pem`, next.cert)
    await writeFile(`${g.dir}/client-key.pem`, next.key)
    g.gateway.setConfig(await compileConfig(parseConfig(config(), `${g.dir}/gateway.yaml`), { previous: g.gateway.current }))
    await new Promise((r) => setTimeout(r, 300))
    stop.now = true
    await load
    expect(failures).toEqual([])
    expect(seenClients).toContain('gateway-1')
    expect(seenClients.at(-1)).toBe('gateway-2')
  })
})
