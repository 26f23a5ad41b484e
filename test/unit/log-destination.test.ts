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
