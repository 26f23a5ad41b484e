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
 * A counter for the request path. Incrementing is a map lookup and an
 * addition; label sets are only formatted when Prometheus scrapes (prom-client
 * hashes the label values on every update, which each request would pay).
 * Registered in a prom-client registry like its own metrics, and summed by
 * the cluster aggregator.
 */
export class CounterSeries {
  readonly type = 'counter'
  readonly aggregator = 'sum'
  private readonly series = new Map<string, { values: readonly string[]; count: number }>()

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    registry: Registry,
  ) {
    registry.registerMetric(this as never)
  }

  inc(values: readonly string[], by = 1): void {
    const key = values.join('\u0000')
    const entry = this.series.get(key)
    if (entry) entry.count += by
    else this.series.set(key, { values: [...values], count: by })
  }

  async get(): Promise<Snapshot> {
    const values = [...this.series.values()].map((s) => ({ value: s.count, labels: labelsOf(this.labelNames, s.values) }))
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
  private readonly series = new Map<string, { values: readonly string[]; buckets: Float64Array; sum: number; count: number }>()

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    private readonly upperBounds: readonly number[],
    registry: Registry,
  ) {
    registry.registerMetric(this as never)
  }

  observe(values: readonly string[], value: number): void {
    const key = values.join('\u0000')
    let entry = this.series.get(key)
    if (!entry) this.series.set(key, (entry = { values: [...values], buckets: new Float64Array(this.upperBounds.length), sum: 0, count: 0 }))
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

  async get(): Promise<Snapshot> {
    const values: Value[] = []
    for (const s of this.series.values()) {
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
