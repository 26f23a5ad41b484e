import { generateKeyPairSync } from 'node:crypto'
import { mkdir, mkdtemp, rename, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { LISTEN_ANY, startServer, type Running } from '../helpers/running.js'
import { send, startEchoUpstream, type Listening } from '../helpers/servers.js'

let one: Listening
let two: Listening
let running: Running | undefined

beforeAll(async () => {
  one = await startEchoUpstream()
  two = await startEchoUpstream()
})
afterEach(async () => {
  await running?.drain()
  running = undefined
})
afterAll(async () => {
  await one.close()
  await two.close()
})

const config = (upstream: string, extraRoute = '') => `${LISTEN_ANY}
upstreams: { api: { url: "${upstream}" } }
routes:
  - { id: a, match: { path: /a }, upstream: api, auth: public }
${extraRoute}`

async function eventually(check: () => Promise<boolean>, ms = 8000): Promise<void> {
  const end = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 50))
  }
}

async function metric(name: string, label: string): Promise<number> {
  const text = (await send(running!.adminUrl, { path: '/metrics' })).body
  const line = text.split('\n').find((l) => l.startsWith(name) && l.includes(label))
  return line ? Number(line.split(' ').at(-1)) : 0
}

describe('hot reload', () => {
  it('a key or certificate file the configuration names is watched too: rewriting it reloads', async () => {
    const keys = await mkdtemp(join(tmpdir(), 'gw-keys-'))
    const pem = () => generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
    await writeFile(join(keys, 'assert.pem'), pem())
    running = await startServer(`${config(one.url)}identity_assertion: { issuer: gw, keys: [{ file: "${join(keys, 'assert.pem')}", kid: k }] }\n`)
    const jwks = async () => (await send(running!.adminUrl, { path: '/.well-known/gateway-jwks.json' })).json<{ keys: Array<{ x: string }> }>().keys[0]!.x
    const before = await jwks()
    expect(await running.reloader.reload('watch')).toBe('unchanged')
    await writeFile(join(keys, 'assert.pem'), pem()) // cert-manager or a Secret volume rotating it
    expect(await running.reloader.reload('watch')).toBe('applied')
    expect(await jwks()).not.toBe(before)
  })

  for (const [what, edit] of [
    ['an upstream URL the URL parser refuses', (c: string) => c.replace(/url: "[^"]+"/, 'url: "http://[zz"')],
    ['a strip_prefix the pattern parser refuses', (c: string) => c.replace('auth: public }', 'auth: public, strip_prefix: "/:x" }')],
    ['a jwks_uri that does not parse', (c: string) => c + '  - { id: j, match: { path: /j }, upstream: api, auth: { issuers: [i], scopes: none } }\nissuers: [{ id: i, issuer: "https://i.example", jwks_uri: "https://[::1/keys", audiences: [a] }]\n'],
    ['an absurd timeout', (c: string) => c.replace('upstreams: { api: { url: "', 'upstreams: { api: { timeout: 0ms, url: "')],
  ] as const) {
    it(`refuses ${what}: the process lives on, the old configuration serves, the failure is counted and logged`, async () => {
      running = await startServer(config(one.url))
      await writeFile(running.file, edit(config(one.url)))
      expect(await running.reloader.reload('signal')).toBe('refused')
      expect((await send(running.url, { path: '/a' })).status).toBe(200)
      expect(await metric('gateway_config_reloads_total', 'outcome="failure"')).toBe(1)
      const refused = running.logs.find((l) => l.msg.startsWith('configuration refused'))!
      expect(JSON.stringify(refused.errors)).toContain(`${running.file}:`)
    })
  }

  it('applies an edited file without a signal', async () => {
    running = await startServer(config(one.url))
    expect((await send(running.url, { path: '/b' })).status).toBe(404)
    await writeFile(running.file, config(one.url, '  - { id: b, match: { path: /b }, upstream: api, auth: public }'))
    await eventually(async () => (await send(running!.url, { path: '/b' })).status === 200)
    expect(running.logs.some((l) => l.msg === 'configuration reloaded')).toBe(true)
    expect(await metric('gateway_config_reloads_total', 'outcome="success"')).toBe(1)
  })

  it('refuses an invalid file: the old configuration keeps serving, the error names file and line', async () => {
    running = await startServer(config(one.url))
    await writeFile(running.file, config(one.url, '  - { id: b, match: { path: /b }, upstream: nowhere, auth: public }'))
    await eventually(async () => running!.logs.some((l) => l.msg === 'configuration refused; the previous configuration stays in force'))
    const refused = running.logs.find((l) => l.msg.startsWith('configuration refused'))!
    expect(JSON.stringify(refused.errors)).toContain(`${running.file}:7:`)
    expect(JSON.stringify(refused.errors)).toContain('unknown upstream \\"nowhere\\"')
    expect((await send(running.url, { path: '/a' })).status).toBe(200)
    expect((await send(running.url, { path: '/b' })).status).toBe(404)
    expect(await metric('gateway_config_reloads_total', 'outcome="failure"')).toBe(1)
    // A YAML syntax error, then a good file again.
    await writeFile(running.file, 'routes: [\n')
    await eventually(async () => (await metric('gateway_config_reloads_total', 'outcome="failure"')) === 2)
    expect((await send(running.url, { path: '/a' })).status).toBe(200)
    await writeFile(running.file, config(two.url))
    await eventually(async () => (await metric('gateway_config_reloads_total', 'outcome="success"')) === 1)
  })

  it('follows a Kubernetes ConfigMap symlink swap', async () => {
    running = await startServer(config(one.url))
    // Rebuild the directory as kubelet lays out a ConfigMap volume, then swap ..data.
    const dir = running.dir
    await mkdir(join(dir, '..2026_11_25_01'))
    await writeFile(join(dir, '..2026_11_25_01', 'gateway.yaml'), config(one.url))
    await symlink('..2026_11_25_01', join(dir, '..data'))
    await rename(join(dir, 'gateway.yaml'), join(dir, 'old.yaml'))
    await symlink('..data/gateway.yaml', join(dir, 'gateway.yaml'))
    await new Promise((r) => setTimeout(r, 300))

    await mkdir(join(dir, '..2026_11_25_02'))
    await writeFile(join(dir, '..2026_11_25_02', 'gateway.yaml'), config(two.url, '  - { id: c, match: { path: /c }, upstream: api, auth: public }'))
    await symlink('..2026_11_25_02', join(dir, '..data_tmp'))
    await rename(join(dir, '..data_tmp'), join(dir, '..data'))
    await eventually(async () => (await send(running!.url, { path: '/c' })).status === 200)
    const res = await send(running.url, { path: '/a' })
    expect(res.json<{ headers: { host: string } }>().headers.host).toBe(new URL(two.url).host)
  })

  it('SIGHUP re-reads the file, and a restart-only change is said to need a restart', async () => {
    running = await startServer(config(one.url))
    await writeFile(running.file, 'limits: { max_connections: 10 }\n' + config(one.url) + '  - { id: d, match: { path: /d }, upstream: api, auth: public }\n')
    expect(await running.reloader.reload('signal')).toBe('applied')
    expect((await send(running.url, { path: '/d' })).status).toBe(200)
    expect(running.logs.find((l) => l.msg === 'configuration changes that take effect only after a restart')?.fields).toEqual(['limits (listener bounds)'])
  })

  it('reloads under load: no request in flight fails, each sees one config or the other', async () => {
    running = await startServer(config(one.url))
    const hosts = new Set([new URL(one.url).host, new URL(two.url).host])
    let stop = false
    const failures: string[] = []
    let count = 0
    const worker = async () => {
      while (!stop) {
        const res = await send(running!.url, { method: 'POST', path: '/a', body: 'x'.repeat(2000), headers: [['Content-Type', 'text/plain']] })
        count++
        if (res.status !== 200) failures.push(`${res.status} ${res.body}`)
        else if (!hosts.has(res.json<{ headers: { host: string } }>().headers.host)) failures.push('unexpected upstream')
      }
    }
    const workers = Array.from({ length: 8 }, worker)
    for (let i = 0; i < 10; i++) {
      await writeFile(running.file, config(i % 2 === 0 ? two.url : one.url))
      expect(await running.reloader.reload('signal')).toBe('applied')
      await new Promise((r) => setTimeout(r, 30))
    }
    stop = true
    await Promise.all(workers)
    expect(failures).toEqual([])
    expect(count).toBeGreaterThan(50)
  })
})
