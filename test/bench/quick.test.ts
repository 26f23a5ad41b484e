import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'

// `npm run bench -- --quick`, the CI smoke run of the benchmark: every phase runs, small, and prints
// its figures. Nothing here judges a number (timings live in the bench, never in tests); this fails
// when a phase breaks or stops printing what the README's performance section reads from it.
const ROOT = new URL('../..', import.meta.url).pathname

function runQuick(): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--quick'], { cwd: ROOT, env: { ...process.env, BENCH_INSTRUCTIONS: '0' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (c: Buffer) => (out += c.toString()))
    child.stderr.on('data', (c: Buffer) => (out += c.toString()))
    child.on('close', (code) => resolve({ code, out }))
  })
}

describe('npm run bench -- --quick', () => {
  it('runs every phase and prints its figures', { timeout: 420_000 }, async () => {
    const { code, out } = await runQuick()
    expect(code, out.slice(-3000)).toBe(0)
    for (const figure of [
      // Fresh tokens, each algorithm, beside the do-it-yourself peer on the same stream
      /^gateway-fresh-RS256 +\d+/m,
      /^gateway-fresh-ES256 +\d+/m,
      /^gateway-fresh-EdDSA +\d+/m,
      /^fresh tokens \(RS256\) \/ do-it-yourself, same stream +\d/m,
      /^fresh tokens \(EdDSA\) \/ do-it-yourself, same stream +\d/m,
      // The mixed row
      /^gateway-mixed-RS256 +\d+/m,
      // Open-loop latency at one offered rate for every target
      /^open loop: \d+ requests\/s offered/m,
      /^gateway-jwt-RS256 +[0-9.]+ +[0-9.]+ +[0-9.]+ +\d+$/m,
      // Memory and pauses, of each kind, and bytes per cached entry
      /^JWTs +\d+ +\d+ +\d+ MB +\d+ MB +[0-9.]+\/[0-9.]+ +[0-9.]+\/[0-9.]+$/m,
      /^introspection results +\d+ +\d+ +\d+ MB +\d+ MB/m,
      /^bytes per cached entry .*: JWT \d+, introspection result \d+ \(\d+ for a token used once\)$/m,
      // The verification paths the gateway chose between
      /^RS256 +node:crypto +[0-9.]+ +WebCrypto +[0-9.]+$/m,
    ]) {
      expect(out).toMatch(figure)
    }
    // No fresh stream reused a token (the pools are large enough), and the results were written.
    expect(out).not.toMatch(/reused a token/)
    const written = /^wrote (.+\.json)$/m.exec(out)?.[1]
    const results = JSON.parse(readFileSync(written!, 'utf8')) as { memory: unknown[]; openLoop: { rows: unknown[] }; settings: { QUICK: boolean } }
    expect(results.settings.QUICK).toBe(true)
    expect(results.memory).toHaveLength(2)
    expect(results.openLoop.rows.length).toBeGreaterThan(0)
  })
})
