import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildGateway, type Gateway } from '../../src/app.js'
import { compileConfig } from '../../src/config/compile.js'
import { parseConfig } from '../../src/config/load.js'

export interface TestGateway {
  readonly gateway: Gateway
  readonly url: string
  readonly dir: string
  close(): Promise<void>
}

/** Writes a YAML config to a temp dir, builds the gateway from it and listens on 127.0.0.1:0. */
export async function startGateway(yaml: string, files: Record<string, string> = {}): Promise<TestGateway> {
  const dir = await mkdtemp(join(tmpdir(), 'gw-test-'))
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content)
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, yaml)
  const config = await compileConfig(parseConfig(yaml, file))
  const gateway = await buildGateway({ config })
  const url = await gateway.app.listen({ host: '127.0.0.1', port: 0 })
  return { gateway, url, dir, close: () => gateway.close() }
}
