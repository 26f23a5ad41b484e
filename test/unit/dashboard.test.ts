import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { Metrics, METRIC_NAMES } from '../../src/metrics/metrics.js'

interface Panel {
  title: string
  targets: Array<{ expr: string }>
}

describe('deploy/grafana/gateway-dashboard.json', () => {
  const dashboard = JSON.parse(readFileSync('deploy/grafana/gateway-dashboard.json', 'utf8')) as { panels: Panel[]; uid: string }

  it('queries only metrics and labels the gateway exports', async () => {
    const metrics = new Metrics({ processMetrics: false })
    metrics.prime({ routes: [], issuers: [], redis: true, hash: 'x' })
    const exported = new Map<string, Set<string>>()
    for (const m of await metrics.registry.getMetricsAsJSON()) {
      const labels = new Set<string>(['job', 'instance', 'le'])
      const labelNames = (metrics.registry.getSingleMetric(m.name) as unknown as { labelNames: string[] }).labelNames
      for (const l of labelNames) labels.add(l)
      exported.set(m.name, labels)
    }
    const used = new Set<string>()
    for (const panel of dashboard.panels) {
      expect(panel.targets.length, panel.title).toBeGreaterThan(0)
      for (const { expr } of panel.targets) {
        for (const [, name, suffix] of expr.matchAll(/\b(gateway_[a-z_]+?)(_bucket|_count|_sum)?\b(?=[{[\s)])/g)) {
          const base = exported.has(name! + (suffix ?? '')) ? name! + (suffix ?? '') : name!
          expect(exported.has(base), `${panel.title}: ${name}`).toBe(true)
          used.add(base)
          for (const [, label] of expr.matchAll(/(?:by \(([^)]*)\))/g)) {
            for (const l of label!.split(',').map((s) => s.trim())) expect(exported.get(base)!.has(l), `${panel.title}: ${base} has no label ${l}`).toBe(true)
          }
        }
      }
    }
    // Every metric the gateway documents is on the dashboard.
    for (const name of METRIC_NAMES) expect(used.has(name), name).toBe(true)
  })
})
