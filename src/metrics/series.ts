import type { Registry } from 'prom-client'

interface Value {
  value: number
  labels: Record<string, string | number>
  metricName?: string
}

interface Snapshot {
  name: string
  help: string
  type: 'counter' | 'histogram'
  aggregator: 'sum'
  values: Value[]
}

function labelsOf(names: readonly string[], values: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {}
  names.forEach((n, i) => (labels[n] = values[i]!))
  return labels
}

/**
 * The series of a metric, found by their label values through one map per
 * label: no key string is built (and hashed afresh) per update, and label
 * values stay apart whatever characters they hold.
 */
class SeriesIndex<E extends { readonly values: readonly string[] }> {
  private readonly root = new Map<string, unknown>()
  readonly all: E[] = []

  constructor(private readonly create: (values: readonly string[]) => E) {}

  get(values: readonly string[]): E {
    let node = this.root
    const last = values.length - 1
    for (let i = 0; i < last; i++) {
      let next = node.get(values[i]!) as Map<string, unknown> | undefined
      if (next === undefined) node.set(values[i]!, (next = new Map()))
      node = next
    }
    let entry = node.get(values[last]!) as E | undefined
    if (entry === undefined) {
      entry = this.create([...values])
      node.set(values[last]!, entry)
      this.all.push(entry)
    }
    return entry
  }

  clear(): void {
    this.root.clear()
    this.all.length = 0
  }
}

/**
 * A counter for the request path. Incrementing is a map lookup and an
 * addition; label sets are only formatted when Prometheus scrapes (prom-client
 * hashes the label values on every update, which each request would pay).
 * Registered in a prom-client registry like its own metrics, and summed by
 * the cluster aggregator.
 */
export class CounterSeries {
  readonly type = 'counter'
  readonly aggregator = 'sum'
  private readonly series = new SeriesIndex((values) => ({ values, count: 0 }))

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    registry: Registry,
  ) {
    registry.registerMetric(this as never)
  }

  inc(values: readonly string[], by = 1): void {
    this.series.get(values).count += by
  }

  /** The count of one series (0 when it was never incremented). */
  value(values: readonly string[]): number {
    return this.series.get(values).count
  }

  async get(): Promise<Snapshot> {
    const values = this.series.all.map((s) => ({ value: s.count, labels: labelsOf(this.labelNames, s.values) }))
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset(): void {
    this.series.clear()
  }
}

/** A histogram for the request path, kept the same way (see CounterSeries). */
export class HistogramSeries {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  private readonly series: SeriesIndex<{ values: readonly string[]; buckets: Float64Array; sum: number; count: number }>

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    private readonly upperBounds: readonly number[],
    registry: Registry,
  ) {
    this.series = new SeriesIndex((values) => ({ values, buckets: new Float64Array(upperBounds.length), sum: 0, count: 0 }))
    registry.registerMetric(this as never)
  }

  observe(values: readonly string[], value: number): void {
    const entry = this.series.get(values)
    const bounds = this.upperBounds
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        entry.buckets[i]!++
        break
      }
    }
    entry.sum += value
    entry.count++
  }

  /** The number of observations of one series (0 when there was none). */
  count(values: readonly string[]): number {
    return this.series.get(values).count
  }

  async get(): Promise<Snapshot> {
    const values: Value[] = []
    for (const s of this.series.all) {
      const labels = labelsOf(this.labelNames, s.values)
      let cumulative = 0
      this.upperBounds.forEach((le, i) => {
        cumulative += s.buckets[i]!
        values.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le }, value: cumulative })
      })
      values.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le: '+Inf' }, value: s.count })
      values.push({ metricName: `${this.name}_sum`, labels, value: s.sum })
      values.push({ metricName: `${this.name}_count`, labels, value: s.count })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset(): void {
    this.series.clear()
  }
}
