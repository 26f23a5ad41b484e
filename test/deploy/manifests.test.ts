import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseAllDocuments, parse } from 'yaml'
import { buildAdmin } from '../../src/admin/app.js'
import { buildGateway } from '../../src/app.js'
import { compileConfig, type CompiledConfig } from '../../src/config/compile.js'
import { parseConfig } from '../../src/config/load.js'
import { main } from '../../src/cli.js'
import { collectorPlan } from '../../src/collector.js'

// The deployment files agree with the gateway: without a container engine,
// every manifest is parsed and cross-checked against the config and endpoints.

type Doc = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any
const K8S = 'deploy/kubernetes'


/** What `kubectl kustomize DIR` renders (kubectl is on the machine; .ci/run installs it where missing). */
function render(dir: string): Doc[] {
  const out = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' })
  expect(out.status, out.stderr).toBe(0)
  const all = parseAllDocuments(out.stdout)
  for (const d of all) expect(d.errors, dir).toEqual([])
  return all.map((d) => d.toJS() as Doc).filter(Boolean)
}

const OVERLAYS = ['base', 'redis', 'overlays/example'].map((d) => join(K8S, d))
const manifests = render(join(K8S, 'overlays/example'))
const byKind = (kind: string, name?: string) => manifests.find((m) => m.kind === kind && (name === undefined || m.metadata?.name === name))!
const deployment = byKind('Deployment', 'gateway')
const container = deployment.spec.template.spec.containers[0]
const configMap = byKind('ConfigMap', 'gateway-config')
const secret = byKind('Secret', 'gateway-credentials')

async function configMapConfig(): Promise<CompiledConfig> {
  // The Secret's keys are what the pods get as environment variables.
  return compileConfig(parseConfig(configMap.data['gateway.yaml'], 'configmap:gateway.yaml', secret.stringData))
}

function portOf(listen: { port: number }): number {
  return listen.port
}

describe('deploy/kubernetes', () => {
  it('every overlay renders with kubectl kustomize; the base holds no Secret (it would overwrite the real one on apply)', () => {
    for (const dir of OVERLAYS) expect(render(dir).length, dir).toBeGreaterThan(0)
    expect(render(join(K8S, 'base')).filter((m) => m.kind === 'Secret')).toEqual([])
    expect(manifests.map((m) => m.kind).sort()).toEqual([
      'ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'Namespace', 'NetworkPolicy', 'NetworkPolicy', 'NetworkPolicy', 'PodDisruptionBudget',
      'PrometheusRule', 'Secret', 'Secret', 'Service', 'Service', 'Service', 'ServiceMonitor', 'StatefulSet',
    ])
    for (const m of manifests) expect(m.apiVersion && m.metadata?.name, JSON.stringify(m).slice(0, 80)).toBeTruthy()
    for (const m of manifests) if (m.kind !== 'Namespace') expect(m.metadata.namespace, m.metadata.name).toBe('gateway')
  })

  it('pods carry the app.kubernetes.io labels; the HPA alone sets the replica count; the PDB lets one pod go at a time', () => {
    expect(deployment.spec.template.metadata.labels).toMatchObject({ 'app.kubernetes.io/name': 'oauth-gateway', 'app.kubernetes.io/part-of': 'oauth-gateway' })
    expect(deployment.spec.replicas).toBeUndefined()
    expect(byKind('PodDisruptionBudget').spec).toMatchObject({ maxUnavailable: 1 })
    expect(byKind('PodDisruptionBudget').spec.minAvailable).toBeUndefined()
  })

  it('Redis needs a password, which the gateway URL carries; only the gateway may reach Redis', () => {
    const redis = byKind('StatefulSet', 'redis').spec.template.spec.containers[0]
    expect(redis.args).toContain('--requirepass')
    expect(redis.env[0].valueFrom.secretKeyRef.name).toBe('redis-auth')
    const password = byKind('Secret', 'redis-auth').stringData.REDIS_PASSWORD
    expect(secret.stringData.REDIS_URL).toContain(`:${password}@`)
    const policy = byKind('NetworkPolicy', 'redis-from-gateway-only')
    expect(policy.spec.ingress[0].from[0].podSelector.matchLabels).toEqual(deployment.spec.selector.matchLabels)
  })

  it('every metric the PrometheusRule alerts on exists, with the labels it groups by', async () => {
    const { Metrics, METRIC_NAMES } = await import('../../src/metrics/metrics.js')
    const rule = byKind('PrometheusRule', 'gateway')
    const exprs: string[] = rule.spec.groups.flatMap((g: Doc) => g.rules.map((r: Doc) => String(r.expr)))
    const metrics = new Metrics({ processMetrics: false })
    metrics.prime({ routes: [], issuers: [], redis: true, hash: 'x' })
    const labelsOf = (name: string) => (metrics.registry.getSingleMetric(name) as unknown as { labelNames?: string[] } | undefined)?.labelNames
    const used = new Set<string>()
    for (const expr of exprs) {
      for (const [, name] of expr.matchAll(/\b(gateway_[a-z_]+)\b/g)) {
        expect(METRIC_NAMES as readonly string[], name).toContain(name)
        used.add(name!)
        for (const [, inner] of expr.matchAll(new RegExp(`${name}\\{([^}]*)\\}`, 'g'))) {
          for (const [, label] of inner!.matchAll(/([a-z_]+)\s*=/g)) expect(labelsOf(name!) ?? [], `${name} ${label}`).toContain(label)
        }
      }
    }
    expect(used.size).toBeGreaterThanOrEqual(6)
  })

  it('the gateway.yaml in the ConfigMap passes gateway validate', async () => {
    const config = await configMapConfig()
    expect(config.router.routes.length).toBeGreaterThan(0)
  })

  it('container ports are the listen ports of that configuration', async () => {
    const config = await configMapConfig()
    const ports = Object.fromEntries(container.ports.map((p: Doc) => [p.name, p.containerPort]))
    expect(ports.http).toBe(portOf(config.server))
    expect(ports.admin).toBe(portOf(config.admin))
    expect(config.server.host).toBe('0.0.0.0')
    expect(config.admin.host).toBe('0.0.0.0') // kubelet probes from outside the pod
  })

  it('probes hit admin endpoints that exist and answer', async () => {
    const config = await configMapConfig()
    const gateway = await buildGateway({ config: { ...config, cache: { ...config.cache, redis: undefined } } })
    const admin = buildAdmin(gateway)
    try {
      for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
        const get = container[probe].httpGet
        expect(get.port, probe).toBe('admin')
        const res = await admin.inject({ method: 'GET', url: get.path })
        expect(res.statusCode, `${probe} ${get.path}`).not.toBe(404)
      }
      expect(container.livenessProbe.httpGet.path).toBe('/healthz')
      expect(container.readinessProbe.httpGet.path).toBe('/readyz')
    } finally {
      await admin.close()
      await gateway.close()
    }
  })

  it('the config is mounted as a directory where the gateway reads it (hot reload needs no subPath)', () => {
    const args: string[] = container.args
    const file = args[args.indexOf('--config') + 1]!
    const mount = container.volumeMounts.find((m: Doc) => m.name === 'config')
    expect(mount.subPath).toBeUndefined()
    expect(file).toBe(`${mount.mountPath}/gateway.yaml`)
    const volume = deployment.spec.template.spec.volumes.find((v: Doc) => v.name === 'config')
    expect(volume.configMap.name).toBe(configMap.metadata.name)
    expect(Object.keys(configMap.data)).toContain('gateway.yaml')
  })

  it('credentials come from the Secret through env, and the config names only those', () => {
    expect(container.envFrom).toContainEqual({ secretRef: { name: secret.metadata.name } })
    const used = [...configMap.data['gateway.yaml'].matchAll(/\$\{([A-Z_]+)\}/g)].map((m) => m[1])
    for (const name of used) expect(Object.keys(secret.stringData), name).toContain(name)
  })

  it('runs non-root on a read-only root filesystem, drains within the grace period', async () => {
    const pod = deployment.spec.template.spec
    expect(pod.securityContext.runAsNonRoot).toBe(true)
    expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } })
    expect(container.resources.requests && container.resources.limits).toBeTruthy()
    const config = await configMapConfig()
    const preStop = Number(container.lifecycle.preStop.exec.command[1])
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(config.server.drainTimeoutMs / 1000 + preStop)
  })

  it("starts node with the collector flags its CPU limit asks for, and the image's entry script", () => {
    const limit = String(container.resources.limits.cpu)
    const cpus = limit.endsWith('m') ? Number(limit.slice(0, -1)) / 1000 : Number(limit)
    const entry = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(readFileSync('Dockerfile', 'utf8'))![1]!) as string[]
    expect(container.command).toEqual(['node', ...collectorPlan(cpus, 1, []).start, ...entry.slice(1)])
    expect(container.command).toContain('--single-threaded-gc')
  })

  it('services, HPA, PDB and ServiceMonitor point at what exists', () => {
    const containerPorts = container.ports.map((p: Doc) => p.name)
    const podLabels = deployment.spec.template.metadata.labels
    for (const svc of manifests.filter((m) => m.kind === 'Service' && m.metadata.name !== 'redis')) {
      for (const [k, v] of Object.entries(svc.spec.selector)) expect(podLabels[k]).toBe(v)
      for (const p of svc.spec.ports) expect(containerPorts).toContain(p.targetPort)
    }
    const monitor = byKind('ServiceMonitor')
    const metricsSvc = manifests.find((m) => m.kind === 'Service' && Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => m.metadata.labels?.[k] === v))!
    expect(metricsSvc).toBeTruthy()
    expect(metricsSvc.spec.ports.map((p: Doc) => p.name)).toContain(monitor.spec.endpoints[0].port)
    expect(monitor.spec.endpoints[0].path).toBe('/metrics')
    expect(byKind('HorizontalPodAutoscaler').spec.scaleTargetRef.name).toBe(deployment.metadata.name)
    expect(byKind('HorizontalPodAutoscaler').spec.minReplicas).toBeGreaterThanOrEqual(2)
    expect(byKind('PodDisruptionBudget').spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels)
  })
})

describe('Dockerfile', () => {
  const dockerfile = readFileSync('Dockerfile', 'utf8')
  const json = (instruction: string) => JSON.parse(new RegExp(`^${instruction} (\\[.*\\])$`, 'm').exec(dockerfile)![1]!) as string[]
  const stages = dockerfile.split(/^FROM /m).slice(1)
  const runtime = stages.at(-1)!

  it('by default starts the configuration mounted at /etc/gateway, never the demo authorization server', async () => {
    const entry = json('ENTRYPOINT')
    const cmd = json('CMD')
    expect(entry).toEqual(['node', 'bin/gateway.js'])
    expect(existsSync(entry[1]!)).toBe(true)
    expect(cmd).toEqual(['start', '--config', '/etc/gateway/gateway.yaml'])
    // Nothing is put at /etc/gateway: without a mounted configuration the container stops, saying why.
    expect(dockerfile).not.toMatch(/^COPY \S+ \/etc\/gateway/m)
    const err: string[] = []
    const code = await main(['validate', '/etc/gateway/gateway.yaml'], { write: () => true } as never, { write: (s: string) => err.push(s) } as never)
    expect(code).toBe(1)
    expect(err.join('')).toContain('file not found')
    // `start` is a real command of the CLI (its usage lists it).
    const chunks: string[] = []
    await main(['help'], { write: (s: string) => chunks.push(s) } as never)
    expect(chunks.join('')).toContain('start --config FILE')
  })

  it('is multi-stage, has no package manager at run time, runs as a non-root user', () => {
    expect(stages).toHaveLength(3)
    expect(runtime).toMatch(/^USER node$/m)
    expect(runtime).toMatch(/rm -rf \/usr\/local\/lib\/node_modules \/usr\/local\/bin\/npm \/usr\/local\/bin\/npx/)
    expect(runtime).not.toMatch(/^RUN .*\bnpm\b(?! \/)/m)
    expect(runtime).toMatch(/^COPY --from=deps \/app\/node_modules/m)
    expect(stages[1]).toMatch(/--omit=dev/)
    for (const [, src] of dockerfile.matchAll(/^COPY (?!--from)(\S+)/gm)) expect(existsSync(src!), src).toBe(true)
  })

  it('its health check follows ADMIN_LISTEN, and the quickstart listens where EXPOSE says', async () => {
    const check = JSON.parse(/HEALTHCHECK[\s\S]*?CMD (\[.*\])$/m.exec(dockerfile)![1]!) as string[]
    expect(check.slice(0, 2)).toEqual(['node', '-e'])
    const script = check[2]!
    const probed: string[] = []
    const run = (env: Record<string, string | undefined>) =>
      new Function('process', 'fetch', script)({ env, exit: () => undefined }, (url: string) => (probed.push(url), Promise.resolve({ ok: true })))
    run({ ADMIN_LISTEN: '0.0.0.0:9090' })
    run({ ADMIN_LISTEN: '[::]:9191' })
    run({ ADMIN_LISTEN: '10.1.2.3:9000' })
    run({})
    expect(probed).toEqual(['http://127.0.0.1:9090/healthz', 'http://127.0.0.1:9191/healthz', 'http://10.1.2.3:9000/healthz', 'http://127.0.0.1:9090/healthz'])
    const env = Object.fromEntries([...dockerfile.matchAll(/^\s+(GATEWAY_LISTEN|ADMIN_LISTEN)=(\S+)/gm)].map((m) => [m[1]!, m[2]!]))
    const config = await compileConfig(parseConfig(readFileSync('config/gateway.yaml', 'utf8'), 'config/gateway.yaml', env))
    expect(`${config.server.host}:${config.server.port}`).toBe('0.0.0.0:8080')
    expect(`${config.admin.host}:${config.admin.port}`).toBe('0.0.0.0:9090')
    expect(dockerfile).toMatch(/^EXPOSE 8080 9090$/m)
  })
})

describe('deploy/compose.yaml', () => {
  const compose = parse(readFileSync('deploy/compose.yaml', 'utf8')) as Doc

  it('has the gateway, Redis, Prometheus and Grafana, wired together', async () => {
    expect(Object.keys(compose.services).sort()).toEqual(['gateway', 'grafana', 'prometheus', 'redis'])
    const gw = compose.services.gateway
    const config = await compileConfig(parseConfig(readFileSync('deploy/compose/gateway.yaml', 'utf8'), 'deploy/compose/gateway.yaml', gw.environment))
    expect(config.cache.redis?.topology).toEqual({ kind: 'standalone', url: 'redis://redis:6379' })
    expect(gw.volumes[0]).toBe('./compose:/etc/gateway:ro')
    expect(gw.ports).toEqual([`127.0.0.1:${config.server.port}:${config.server.port}`, `127.0.0.1:${config.admin.port}:${config.admin.port}`])
    const prometheus = parse(readFileSync('deploy/prometheus/prometheus.yml', 'utf8')) as Doc
    expect(prometheus.scrape_configs[0].static_configs[0].targets).toEqual([`gateway:${config.admin.port}`])
  })

  it('provisions Grafana with the Prometheus data source and the dashboard file', () => {
    const grafana = compose.services.grafana
    for (const v of grafana.volumes as string[]) expect(existsSync(join('deploy', v.split(':')[0]!)), v).toBe(true)
    const ds = parse(readFileSync('deploy/grafana/provisioning/datasources/prometheus.yaml', 'utf8')) as Doc
    expect(ds.datasources[0].url).toBe(`http://prometheus:9090`)
    const provider = parse(readFileSync('deploy/grafana/provisioning/dashboards/dashboards.yaml', 'utf8')) as Doc
    const mount = (grafana.volumes as string[]).find((v) => v.includes('gateway-dashboard.json'))!
    expect(mount.split(':')[1]!.startsWith(provider.providers[0].options.path)).toBe(true)
  })
})

describe('deploy/tracing/compose.yaml', () => {
  const compose = parse(readFileSync('deploy/tracing/compose.yaml', 'utf8')) as Doc
  const collector = parse(readFileSync('deploy/tracing/collector.yaml', 'utf8')) as Doc

  it('wires the gateway to the Collector through the standard variables, and the Collector to Jaeger', async () => {
    expect(Object.keys(compose.services).sort()).toEqual(['gateway', 'jaeger', 'otel-collector'])
    const gw = compose.services.gateway
    for (const v of [...(gw.volumes as string[]), ...(compose.services['otel-collector'].volumes as string[])]) expect(existsSync(join('deploy/tracing', v.split(':')[0]!)), v).toBe(true)
    const config = await compileConfig(parseConfig(readFileSync('deploy/tracing/gateway/gateway.yaml', 'utf8'), 'deploy/tracing/gateway/gateway.yaml', gw.environment))
    // The endpoint comes from OTEL_EXPORTER_OTLP_ENDPOINT: the Collector's OTLP/HTTP receiver.
    expect(config.tracing).toMatchObject({ endpoint: 'http://otel-collector:4318/v1/traces', protocol: 'http/protobuf', serviceName: 'gateway', ratio: 1 })
    expect(collector.receivers.otlp.protocols.http.endpoint).toBe('0.0.0.0:4318')
    const pipeline = collector.service.pipelines.traces
    expect(pipeline.receivers).toEqual(['otlp'])
    for (const p of pipeline.processors as string[]) expect(collector.processors[p]).toBeDefined()
    for (const e of pipeline.exporters as string[]) expect(collector.exporters[e]).toBeDefined()
    // Jaeger takes OTLP on 4317 and serves its UI on 16686.
    expect(collector.exporters['otlp/jaeger'].endpoint).toBe('jaeger:4317')
    expect(compose.services.jaeger.environment.COLLECTOR_OTLP_ENABLED).toBe('true')
    expect(compose.services.jaeger.ports).toEqual(['127.0.0.1:16686:16686'])
  })
})
