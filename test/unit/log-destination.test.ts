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
  // An error thrown in the same tick as the logging leaves a batch half
  // handed to the kernel; one thrown from a timer leaves it between batches.
  for (const [when, crash] of [
    ['in the same tick', "throw new Error('boom')"],
    ['from a timer', "setTimeout(() => { throw new Error('boom') }, 5)"],
  ] as const) {
    it(`writes out every line taken, once and in order, before an uncaught error thrown ${when} ends the process`, async () => {
      const script = [
        "import { createLogger } from './src/logger.ts'",
        'const logger = createLogger()',
        "for (let i = 0; i < 20_000; i++) logger.info({ n: i }, 'line')",
        crash,
      ].join('\n')
      const out = await runOnPipe(['--import', 'tsx', '--input-type=module', '-e', script])
      expect(out.stderr).toContain('boom')
      const lines = out.stdout.trim().split('\n')
      expect(lines).toHaveLength(20_000)
      lines.forEach((line, i) => expect(JSON.parse(line)).toMatchObject({ n: i, level: 'info' }))
    })
  }
})

/**
 * Runs node with stdout on a real pipe (as under a container runtime or
 * `node … | collector`), where a write that meets a full pipe is cut short
 * and the rest must follow, whatever moment the process dies at.
 */
async function runOnPipe(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const { spawn } = await import('node:child_process')
  const child = spawn('sh', ['-c', '"$0" "$@" | cat', process.execPath, ...args], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  await new Promise((resolve) => child.on('close', resolve))
  return { stdout, stderr }
}
