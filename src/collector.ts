import cluster from 'node:cluster'
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { setFlagsFromString } from 'node:v8'

/** How the serving process's garbage collector is set up, and why (logged at start). */
export interface CollectorSettings {
  /** CPUs the process may use: its affinity, bounded by a cgroup CPU quota. */
  readonly cpus: number
  /** Serving processes sharing them (`server.workers`). */
  readonly processes: number
  /** V8 flags set at start (those given to node itself are kept instead). */
  readonly set: readonly string[]
  /** Flags node should have been started with for these CPUs (see collectorPlan). */
  readonly missing: readonly string[]
}

export interface CollectorPlan {
  /** Flags the heap reads as it goes: set by the process itself. */
  readonly runtime: readonly string[]
  /** Flags V8 reads only as it starts: node must be given them. */
  readonly start: readonly string[]
}

/** V8 flags about the collector that, given to node, are the operator's choice. */
const GROWTH = /^--heap-growing-percent\b/
const THREADS = /^--(no-)?(single-threaded-gc|concurrent-marking|parallel-marking|parallel-scavenge|concurrent-sweeping|parallel-compaction)\b|^--v8-pool-size\b/

/**
 * The collector flags for a process with `cpus` CPUs shared by `processes`
 * serving processes:
 * - `--heap-growing-percent=30` (set at run time): the old generation grows
 *   30 % past what survived the last full collection before the next one,
 *   rather than by V8's own factor (up to 4× when collections look slow, as
 *   they do on one busy core). The token caches make a large heap of
 *   long-lived entries that churn; with V8's factor the bench's memory phase
 *   peaked at 245–262 MB RSS with 100,000 introspection results.
 * - `--single-threaded-gc` (at start) when the process has one CPU or less
 *   of its own: a pinned core, a cgroup quota of one CPU (as the Kubernetes
 *   manifests set), `server.workers` processes on as many CPUs. V8's
 *   concurrent marking and sweeping threads can then only run in the event
 *   loop's time: the kernel slices them in between its work (16–28 ms
 *   incremental steps measured, in 4 ms ticks), a marking they have not
 *   finished is done in the final pause (42 ms once), and under a quota the
 *   CPU they spend counts against the event loop's (it is throttled once the
 *   period's share is gone). Alone, the collector works in steps it bounds. V8 reads this flag only as it
 *   starts: set at run time, a marking begun with concurrent threads fails a
 *   check at its end and aborts the process. So it is asked for (logged),
 *   given to cluster workers, and given by the Kubernetes manifests.
 * Flags of either kind given to node itself (`--heap-growing-percent`,
 * `--single-threaded-gc` or its negation, `--v8-pool-size`, the concurrent
 * and parallel collector flags) are kept instead.
 */
export function collectorPlan(cpus: number, processes: number, execArgv: readonly string[]): CollectorPlan {
  return {
    runtime: execArgv.some((a) => GROWTH.test(a)) ? [] : ['--heap-growing-percent=30'],
    start: cpus / Math.max(1, processes) <= 1 && !execArgv.some((a) => THREADS.test(a)) ? ['--single-threaded-gc'] : [],
  }
}

/**
 * CPUs this process may use: its affinity (what `taskset` or a cpuset
 * leaves it), bounded by a cgroup CPU quota, which Node's own count does not
 * read: v2 `cpu.max` of its cgroup and every cgroup above it, else v1
 * `cpu.cfs_quota_us` over `cpu.cfs_period_us`. A fraction of a CPU counts as
 * what it is (0.5).
 */
export function usableCpus(read: (path: string) => string | undefined = readOrUndefined, affinity = availableParallelism()): number {
  const quota = cgroupQuota(read)
  return quota === undefined ? affinity : Math.min(affinity, quota)
}

function cgroupQuota(read: (path: string) => string | undefined): number | undefined {
  const cgroups = read('/proc/self/cgroup') ?? ''
  // v2: "0::/path" ("0::/" in a container with its own cgroup namespace); the least quota on the way up.
  const v2 = /^0::(\/.*)$/m.exec(cgroups)?.[1]
  let found = false
  let least: number | undefined
  if (v2 !== undefined) {
    for (let dir = v2.replace(/\/+$/, ''); ; dir = dir.slice(0, dir.lastIndexOf('/'))) {
      const max = read(`/sys/fs/cgroup${dir}/cpu.max`)?.trim().split(/\s+/)
      if (max !== undefined) found = true
      const quota = max === undefined || max[0] === 'max' ? undefined : ratio(max[0], max[1])
      if (quota !== undefined && (least === undefined || quota < least)) least = quota
      if (dir === '') break
    }
  }
  if (found) return least
  // v1 (or a hybrid host, whose v2 hierarchy holds no cpu controller): "N:cpu,cpuacct:/path".
  const v1 = /^\d+:(?:[^:]*,)?cpu(?:,[^:]*)?:(\/.*)$/m.exec(cgroups)?.[1]?.replace(/\/+$/, '') ?? ''
  return ratio(read(`/sys/fs/cgroup/cpu${v1}/cpu.cfs_quota_us`)?.trim(), read(`/sys/fs/cgroup/cpu${v1}/cpu.cfs_period_us`)?.trim())
}

function ratio(quota: string | undefined, period: string | undefined): number | undefined {
  const q = Number(quota)
  const p = Number(period)
  // "max", -1 (no quota) and anything unreadable: no bound.
  return Number.isFinite(q) && Number.isFinite(p) && q > 0 && p > 0 ? q / p : undefined
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return undefined
  }
}

/**
 * Sets the collector up for this process (before the caches fill the heap).
 * `processes`: serving processes sharing the CPUs; a cluster worker learns
 * it from its primary (GATEWAY_PROCESSES).
 */
export function tuneCollector(processes = cluster.isWorker ? Number(process.env.GATEWAY_PROCESSES) || 1 : 1): CollectorSettings {
  const cpus = usableCpus()
  const plan = collectorPlan(cpus, processes, process.execArgv)
  for (const flag of plan.runtime) setFlagsFromString(flag)
  return { cpus, processes, set: plan.runtime, missing: plan.start }
}

/** The node flags cluster workers start with: the primary's, and what their share of the CPUs asks for. */
export function workerExecArgv(workers: number): string[] {
  return [...process.execArgv, ...collectorPlan(usableCpus(), workers, process.execArgv).start]
}
