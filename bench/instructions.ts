// Instructions per request, counted by valgrind's callgrind: a measure that
// does not move with what else the machine is doing (wall-clock and CPU time
// on these shared machines vary by 20% between runs; these counts repeat to
// about 1%). Only user-space instructions of the process's busiest thread
// (the event loop) are counted: the system calls are the same for every Node
// proxy here, and JIT and GC helper threads vary from run to run.
//
// HAProxy (nbthread 1) and nginx (one worker, no master) are counted the same
// way, so that "fewer instructions per request than HAProxy jwt_verify" is a
// number that does not move with the machine.
//
// Caveat: under valgrind OpenSSL runs without the CPU's SHA extensions, so
// hashing tokens (the JWT and introspection routes) weighs more here than on
// the real CPU; it does so for HAProxy's signature checks too.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { Agent, get } from 'node:http'
import { join } from 'node:path'

export interface InstructionTarget {
  /** One process, started with `<command> <args(port)>` (command: this Node by default; HAProxy and nginx run as themselves). */
  readonly process: string
  readonly command?: string
  readonly args: (port: number) => string[]
  /** What to measure on it, one after the other. */
  readonly scenarios: ReadonlyArray<{ name: string; path: string; headers: Headers }>
}

/** Fixed headers, or headers made for each request (a DPoP proof is accepted once), given the target's origin. */
export type Headers = Record<string, string> | ((origin: string) => Record<string, string>)

export interface InstructionOptions {
  /** Requests counted per window, five windows per scenario (after four times as many, and at least 2,000, to warm up). */
  readonly requests: number
  readonly cwd: string
  readonly work: string
  readonly freePort: () => Promise<number>
}

/** Measured windows per scenario; the median is reported. */
const WINDOWS = 5

export function canCountInstructions(): boolean {
  return spawnSync('sh', ['-c', 'command -v valgrind && command -v callgrind_control']).status === 0
}

/** Sends exactly n GET requests over a few keep-alive connections; any answer but 2xx fails the measure. */
async function send(url: string, headers: Headers, n: number, connections = 8): Promise<void> {
  const origin = new URL(url).origin
  const agent = new Agent({ keepAlive: true, maxSockets: connections })
  let started = 0
  let finished = 0
  try {
    await new Promise<void>((resolve, reject) => {
      const one = () => {
        if (started >= n) return
        started++
        get(url, { agent, headers: typeof headers === 'function' ? headers(origin) : headers }, (res) => {
          res.resume()
          res.on('end', () => {
            if ((res.statusCode ?? 0) >= 300) return reject(new Error(`${url}: status ${res.statusCode}`))
            if (++finished === n) resolve()
            else one()
          })
        }).on('error', reject)
      }
      for (let i = 0; i < connections; i++) one()
    })
  } finally {
    agent.destroy()
  }
}

async function waitUntilServing(url: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new Error(`exited (${child.exitCode}) under valgrind`)
    const ok = await fetch(url).then(
      () => true,
      () => false,
    )
    if (ok) return
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error('did not start under valgrind within 120 s')
}

/** The event loop's count in dump number `dump`: the largest of the per-thread files. */
function mainThreadTotal(outFile: string, dump: number): number {
  const dir = join(outFile, '..')
  const base = outFile.slice(dir.length + 1)
  let max = 0
  for (const f of readdirSync(dir)) {
    if (!f.startsWith(`${base}.${dump}-`)) continue
    const m = /^totals:\s+(\d+)/m.exec(readFileSync(join(dir, f), 'utf8'))
    if (m) max = Math.max(max, Number(m[1]))
  }
  if (max === 0) throw new Error(`no callgrind dump ${dump} in ${dir}`)
  return max
}

/** Instructions per request of each scenario, by scenario name. */
export async function countInstructions(targets: readonly InstructionTarget[], options: InstructionOptions): Promise<Map<string, number>> {
  const counts = new Map<string, number>()
  for (const target of targets) {
    if (target.scenarios.length === 0) continue
    const port = await options.freePort()
    const outFile = join(options.work, `callgrind-${target.process}`)
    const child = spawn(
      'valgrind',
      ['--tool=callgrind', '--separate-threads=yes', '--instr-atstart=no', '--smc-check=all-non-file', `--callgrind-out-file=${outFile}`, target.command ?? process.execPath, ...target.args(port)],
      { cwd: options.cwd, stdio: 'ignore' },
    )
    try {
      const origin = `http://127.0.0.1:${port}`
      await waitUntilServing(origin + target.scenarios[0]!.path, child)
      let dump = 0
      for (const s of target.scenarios) {
        await send(origin + s.path, s.headers, Math.max(options.requests * 4, 2_000))
        // Several windows, and their median: a major GC or a deoptimisation that falls into one
        // window adds tens of thousands of instructions per request to it, never to most.
        const perWindow: number[] = []
        for (let w = 0; w < WINDOWS; w++) {
          spawnSync('callgrind_control', ['--zero', String(child.pid)])
          spawnSync('callgrind_control', ['--instr=on', String(child.pid)])
          await send(origin + s.path, s.headers, options.requests)
          spawnSync('callgrind_control', ['--instr=off', String(child.pid)])
          spawnSync('callgrind_control', ['--dump', String(child.pid)])
          dump++
          perWindow.push(mainThreadTotal(outFile, dump) / options.requests)
        }
        perWindow.sort((a, b) => a - b)
        counts.set(s.name, Math.round(perWindow[Math.floor(WINDOWS / 2)]!))
        const spread = perWindow.map((n) => (n / 1000).toFixed(0)).join(' ')
        console.log(`  instructions ${s.name.padEnd(22)} ${(counts.get(s.name)! / 1000).toFixed(1).padStart(7)}k per request (windows: ${spread}k)`)
      }
    } catch (err) {
      // One target that cannot be counted (a tool missing, a start failing under valgrind) is reported, not the end of the run.
      console.warn(`  instructions ${target.process}: not counted (${err instanceof Error ? err.message : String(err)})`)
    } finally {
      child.kill('SIGKILL')
    }
  }
  return counts
}
