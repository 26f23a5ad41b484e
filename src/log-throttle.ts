/**
 * Wraps a report (usually a log line) so that it runs at most once per
 * interval however often the event happens; each report is told how many
 * events it stands for. For events a client can cause at will, so that the
 * log cannot be flooded.
 */
export function occasionally(intervalMs: number, report: (count: number) => void, now: () => number = Date.now): () => void {
  let last = Number.NEGATIVE_INFINITY
  let pending = 0
  return () => {
    pending++
    const t = now()
    if (t - last < intervalMs) return
    last = t
    const count = pending
    pending = 0
    report(count)
  }
}
