import { closeSync, openSync, readFileSync } from 'node:fs'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { BATCH_BYTES, BatchedDestination } from '../../src/log-destination.js'

describe('BatchedDestination', () => {
  it('writes every line, in order, whether flushed asynchronously or synchronously', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'gw-log-')), 'out.log')
    const fd = openSync(file, 'w')
    const d = new BatchedDestination(fd)
    const lines: string[] = []
    for (let i = 0; i < 20_000; i++) {
      const line = `{"n":${i},"pad":"${'x'.repeat(i % 50)}"}\n`
      lines.push(line)
      d.write(line)
    }
    await new Promise<void>((resolve) => d.flush(resolve))
    d.write('{"last":true}\n')
    d.flushSync()
    closeSync(fd)
    expect(readFileSync(file, 'utf8')).toBe(lines.join('') + '{"last":true}\n')
    expect(lines.join('').length).toBeGreaterThan(BATCH_BYTES * 4)
  })

  it('writes on its timer when few lines come', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'gw-log-')), 'out.log')
    const fd = openSync(file, 'w')
    const d = new BatchedDestination(fd)
    d.write('quiet\n')
    await new Promise((r) => setTimeout(r, 300))
    expect(readFileSync(file, 'utf8')).toBe('quiet\n')
    closeSync(fd)
  })
})

describe('the gateway logger on a crash', () => {
  it('writes out every line taken before an uncaught error ends the process', async () => {
    const { spawnSync } = await import('node:child_process')
    const script = [
      "import { createLogger } from './src/logger.ts'",
      'const logger = createLogger()',
      "for (let i = 0; i < 5000; i++) logger.info({ n: i }, 'line')",
      "setTimeout(() => { throw new Error('boom') }, 5)",
    ].join('\n')
    const out = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', cwd: process.cwd() })
    expect(out.status).not.toBe(0)
    expect(out.stderr).toContain('boom')
    const lines = out.stdout.trim().split('\n').map((l) => JSON.parse(l) as { n: number; level: string })
    expect(lines).toHaveLength(5000)
    expect(lines.at(-1)).toMatchObject({ n: 4999, level: 'info' })
  })
})
