import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse, stringify } from 'yaml'
import { compileConfig } from '../../src/config/compile.js'
import { ConfigError } from '../../src/config/errors.js'
import { parseConfig } from '../../src/config/load.js'
import { ConfigSchema } from '../../src/config/schema.js'
import { TestCa } from '../helpers/pki.js'

// Every YAML block in the README passes `validate` as written. A block that
// shows one section (or a route's `auth`) is checked inside a small
// configuration that holds what it leaves out; the files it names are
// created for it, each of the kind its field takes; every ${VAR} it uses is
// set. A block that is wrong (a field renamed, a method_scopes entry for a
// method its route does not match) fails here.

const README = readFileSync('README.md', 'utf8')
const SECTIONS = new Set(Object.keys(ConfigSchema.properties))

interface Block {
  readonly line: number
  readonly yaml: string
}

function yamlBlocks(markdown: string): Block[] {
  const blocks: Block[] = []
  const lines = markdown.split('\n')
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== '```yaml') continue
    const start = i + 1
    let end = start
    while (end < lines.length && lines[end] !== '```') end++
    // A block may hold several alternatives, separated as YAML documents.
    let docStart = start
    for (let j = start; j <= end; j++) {
      if (j === end || lines[j] === '---') {
        blocks.push({ line: docStart + 1, yaml: lines.slice(docStart, j).join('\n') })
        docStart = j + 1
      }
    }
    i = end
  }
  return blocks
}

type Doc = Record<string, unknown>

/** What a block showing only some sections is checked inside. */
function around(block: Doc): Doc {
  const keys = Object.keys(block)
  const route: Doc = {
    id: 'orders',
    match: { path: '/tenants/:tenant/orders/*' },
    upstream: 'orders',
    auth: { issuers: ['corp'], scopes: 'none' },
  }
  if (keys.every((k) => !SECTIONS.has(k))) {
    // A fragment of a route (its auth, its match …).
    return around({ routes: [{ ...route, ...block }] })
  }
  const base: Doc = {
    upstreams: { orders: { url: 'https://orders.internal:8443' } },
    issuers: [{ id: 'corp', issuer: 'https://auth.example.com', jwks_uri: 'https://auth.example.com/.well-known/jwks.json', audiences: ['orders-api'] }],
    routes: [route],
  }
  return { ...base, ...block }
}

/** Creates each file the configuration names, of the kind its field takes. */
async function createFiles(config: Doc, dir: string): Promise<void> {
  const write = async (file: unknown, text: string) => {
    if (typeof file !== 'string') return
    const path = join(dir, file)
    await mkdir(dirname(path), { recursive: true })
    await writeFile(path, text)
  }
  const pkcs8 = (type: 'rsa' | 'ed25519') =>
    generateKeyPairSync(type as 'rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
  const spki = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }) as string
  const keyFiles = (section: unknown) => ((section as { keys?: { file?: unknown }[] } | undefined)?.keys ?? []).map((k) => k.file)
  for (const file of keyFiles(config.authorization_server)) await write(file, pkcs8('rsa'))
  for (const file of keyFiles(config.identity_assertion)) await write(file, pkcs8('ed25519'))
  for (const issuer of (config.issuers as Doc[] | undefined) ?? []) for (const file of keyFiles(issuer)) await write(file, spki())
  const listener = (config.server as Doc | undefined)?.tls as Doc | undefined
  if (listener) {
    const ca = await TestCa.create()
    const leaf = await ca.issue({ cn: 'gateway.example.com', dns: ['gateway.example.com'] })
    await write(listener.cert, leaf.cert)
    await write(listener.key, leaf.key)
    await write((listener.client_certificates as Doc | undefined)?.ca, (await TestCa.create('clients')).pem)
  }
  for (const upstream of Object.values((config.upstreams as Record<string, Doc> | undefined) ?? {})) {
    const tls = upstream.tls as Doc | undefined
    if (!tls) continue
    const ca = await TestCa.create()
    const leaf = await ca.issue({ cn: 'gateway', client: true })
    await write(tls.ca, ca.pem)
    await write(tls.cert, leaf.cert)
    await write(tls.key, leaf.key)
  }
}

/** A value of the kind the variable's name says. */
function envValue(name: string): string {
  if (name.endsWith('REDIS_URL')) return 'redis://redis.internal:6379/0'
  if (name.endsWith('_URL')) return 'https://service.internal'
  return randomBytes(32).toString('base64url')
}

const blocks = yamlBlocks(README)
let dir: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gw-readme-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('the README', () => {
  it('shows configuration in YAML blocks', () => {
    expect(blocks.length).toBeGreaterThan(8)
  })

  for (const block of blocks) {
    it(`README.md:${block.line}: its YAML passes validate`, async () => {
      const shown = parse(block.yaml) as Doc
      const whole = 'routes' in shown && 'upstreams' in shown
      const config = whole ? shown : around(shown)
      const env: NodeJS.ProcessEnv = {}
      for (const [, name] of block.yaml.matchAll(/\$\{([A-Z0-9_]+)/g)) env[name!] = envValue(name!)
      const blockDir = await mkdtemp(join(dir, 'block-'))
      await createFiles(config, blockDir)
      const file = join(blockDir, 'gateway.yaml')
      // A whole file is checked as its own text, so the lines in errors are the block's.
      const text = whole ? block.yaml : stringify(config)
      await writeFile(file, text)
      try {
        await compileConfig(parseConfig(text, file, env))
      } catch (err) {
        if (err instanceof ConfigError) expect.fail(`README.md:${block.line}:\n${err.message}`)
        throw err
      }
    })
  }
})
