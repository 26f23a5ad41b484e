import { AggregatorRegistry, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { CounterSeries, HistogramSeries } from '../../src/metrics/series.js'

describe('metric series', () => {
  it('a counter series prints like a prom-client counter', async () => {
    const registry = new Registry()
    const c = new CounterSeries('t_total', 'help text', ['a', 'b'], registry)
    c.inc(['x', 'y'])
    c.inc(['x', 'y'], 2)
    c.inc(['x', 'z"q'])
    expect(await registry.metrics()).toBe('# HELP t_total help text\n# TYPE t_total counter\nt_total{a="x",b="y"} 3\nt_total{a="x",b="z\\"q"} 1\n')
  })

  it('keeps label values apart whatever characters they hold', async () => {
    const registry = new Registry()
    const c = new CounterSeries('t_total', 'h', ['a', 'b'], registry)
    c.inc(['x\u0000y', 'z'])
    c.inc(['x', 'y\u0000z'])
    c.inc(['x', 'y\u0000z'])
    const json = (await registry.getMetricsAsJSON())[0] as unknown as { values: { labels: Record<string, string>; value: number }[] }
    expect(json.values).toEqual([
      { labels: { a: 'x\u0000y', b: 'z' }, value: 1 },
      { labels: { a: 'x', b: 'y\u0000z' }, value: 2 },
    ])
  })

  it('a series without labels counts too', async () => {
    const registry = new Registry()
    const c = new CounterSeries('t_total', 'h', [], registry)
    c.inc([])
    c.inc([], 4)
    expect(await registry.metrics()).toContain('t_total 5')
  })

  it('a histogram series has cumulative buckets, +Inf, sum and count', async () => {
    const registry = new Registry()
    const h = new HistogramSeries('t_seconds', 'h', ['m'], [0.1, 1], registry)
    for (const v of [0.05, 0.5, 0.5, 7]) h.observe(['GET'], v)
    const lines = (await registry.metrics()).split('\n').filter((l) => l.startsWith('t_seconds'))
    expect(lines).toEqual([
      't_seconds_bucket{m="GET",le="0.1"} 1',
      't_seconds_bucket{m="GET",le="1"} 3',
      't_seconds_bucket{m="GET",le="+Inf"} 4',
      't_seconds_sum{m="GET"} 8.05',
      't_seconds_count{m="GET"} 4',
    ])
  })

  it('series from several workers are summed by the cluster aggregator', async () => {
    const one = new Registry()
    const two = new Registry()
    new CounterSeries('t_total', 'h', ['a'], one).inc(['x'], 2)
    new CounterSeries('t_total', 'h', ['a'], two).inc(['x'], 3)
    const merged = AggregatorRegistry.aggregate([await one.getMetricsAsJSON(), await two.getMetricsAsJSON()] as never)
    expect(await merged.metrics()).toContain('t_total{a="x"} 5')
  })
})
