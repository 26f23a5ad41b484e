// npm run bench: throughput, latency, CPU per request and peak RSS of this
// gateway against baselines measured in the same run, as ratios.
//
// Each target is its own process pinned to core 0 (when taskset and 2 cores
// are there); the load generator (wrk when installed, else autocannon) and the
// upstream share core 1. Rounds are interleaved and medians reported: these
// machines are shared and noisy, so absolute numbers mean little, ratios more.
// Each ratio is the median of its per-round ratios (the two targets measured
// in the same round), printed with their spread.
//
// Settings (environment): BENCH_DURATION (s, default 2), BENCH_ROUNDS (3),
// BENCH_CONNECTIONS (50), BENCH_TARGETS (comma-separated subset), BENCH_MEMORY_TOKENS (200000; 0 skips),
// BENCH_INSTRUCTIONS (requests per window counted under callgrind; 0 skips: see
// bench/instructions.ts; default 500; BENCH_INSTRUCTIONS_ALL=1 counts every Node target, not only the comparison with
// HAProxy and nginx), BENCH_FRESH_PER_ROUND (8000). `npm run bench -- --quick`: every phase, small.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:http'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash, createPublicKey, generateKeyPairSync, randomBytes, sign as cryptoSign } from 'node:crypto'
import { connect as tcpConnect } from 'node:net'
import { TestCa } from '../test/helpers/pki.js'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose'
import { Redis } from 'ioredis'
import { canCountInstructions, countInstructions, type InstructionTarget } from './instructions.js'
import { signPool, type PoolAlg } from './tokens.js'
import { memoryPhase, type MemoryResult } from './memory.js'
import { collectorPlan } from '../src/collector.js'

/** --quick: every phase, each as small as still says something (a smoke run for CI, under two minutes). */
const QUICK = process.argv.includes('--quick')
const DURATION = Number(process.env.BENCH_DURATION ?? (QUICK ? 1 : 2))
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 1 : 3))
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50)
/** Distinct tokens of each kind sent in the memory phase (twice the default cache bound: the first ones are evicted). */
// Every gateway runs on one pinned core, started with the node flags one CPU asks for
// (collector.ts: the Kubernetes deployment gives them for its one-CPU limit).
const GATEWAY = [...collectorPlan(1, 1, []).start, 'bin/gateway.js']
const MEMORY_TOKENS = Number(process.env.BENCH_MEMORY_TOKENS ?? (QUICK ? 4_000 : 200_000))
const ONLY = process.env.BENCH_TARGETS?.split(',')
const INSTRUCTIONS = Number(process.env.BENCH_INSTRUCTIONS ?? (QUICK ? 0 : 500))
/** Fresh tokens per round and target (each target sees each once); the pool holds a warm-up slice and every round's. */
const FRESH_PER_ROUND = Number(process.env.BENCH_FRESH_PER_ROUND ?? (QUICK ? 1_000 : 8_000))
const FRESH_WARM = QUICK ? 500 : 2_000
const ROOT = new URL('..', import.meta.url).pathname
const WORK = mkdtempSync(join(tmpdir(), 'gw-bench-'))
const ISSUER = 'https://bench.example'
const AUDIENCE = 'bench-api'
const CLK_TCK = 100

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0
const PIN = has('taskset') && cpus().length >= 2
const WRK = has('wrk')
const pinned = (core: number, cmd: string, args: string[]) => (PIN ? ['taskset', ['-c', String(core), cmd, ...args]] : [cmd, args]) as [string, string[]]

const children: ChildProcess[] = []
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')))

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })
}

async function waitForPort(port: number, child: ChildProcess, what: string, tls = false): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode})`)
    const ok = await new Promise<boolean>((resolve) => {
      // An HTTPS listener with a bench certificate: a TCP connection says it listens.
      if (tls) {
        const s = tcpConnect(port, '127.0.0.1', () => {
          s.destroy()
          resolve(true)
        })
        s.on('error', () => resolve(false))
        return
      }
      const req = (globalThis.fetch as typeof fetch)(`http://127.0.0.1:${port}/`).then(
        () => resolve(true),
        () => resolve(false),
      )
      void req
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`${what} did not start on ${port}`)
}

function start(core: number, cmd: string, args: string[], what: string): ChildProcess {
  const [c, a] = pinned(core, cmd, args)
  const child = spawn(c, a, { stdio: ['ignore', 'ignore', 'inherit'], cwd: ROOT })
  children.push(child)
  void what
  return child
}

/** The pid of the process that does the work (taskset execs into it, so the same pid). */
function cpuTicks(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    return Number(fields[11]) + Number(fields[12])
  } catch {
    return 0
  }
}

function peakRssMb(pid: number): number {
  try {
    const m = /VmHWM:\s+([0-9]+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) / 1024 : 0
  } catch {
    return 0
  }
}

interface Load {
  rps: number
  p50: number
  p99: number
  non2xx: number
  /** From the token-stream generator (bench/load-http.mjs). */
  p999?: number
  /** How long the measure took (a fresh-token round runs until its tokens are sent). */
  seconds?: number
  /** Requests that reused a token of a stream meant to be fresh: should be 0. */
  repeats?: number
}

/**
 * A token stream (bench/load-http.mjs): fresh, each token of the pool sent
 * once (a slice per round, another to warm up), or mixed (hot tokens the
 * target has seen, and a share of fresh ones from the pool).
 */
interface TokenStream {
  readonly file: string
  /** Fresh tokens a round may take; a fresh stream sends exactly these. */
  readonly perRound: number
  /** Tokens before the first round's, for warming up (a mixed stream warms up on its hot tokens only). */
  readonly warm: number
  readonly hot?: string
  readonly freshShare?: number
}

async function streamLoad(url: string, stream: TokenStream, seconds: number, round: number | 'warm', connections = CONNECTIONS): Promise<Load> {
  const from = round === 'warm' ? 0 : stream.warm + round * stream.perRound
  const count = round === 'warm' ? stream.warm : stream.perRound
  const args = [join(ROOT, 'bench/load-http.mjs'), url, String(connections), String(seconds), '--tokens', stream.file, '--from', String(from), '--count', String(count)]
  if (stream.hot) args.push('--hot', stream.hot, '--fresh-share', String(round === 'warm' ? 0 : (stream.freshShare ?? 0.1)))
  return JSON.parse(await output(...pinned(1, process.execPath, args))) as Load
}

function parseWrkLatency(text: string, pct: string): number {
  const m = new RegExp(`\\s${pct}%\\s+([0-9.]+)(us|ms|s)`).exec(text)
  if (!m) return NaN
  const v = Number(m[1])
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v
}

/**
 * A command's standard output, run asynchronously: this process keeps serving
 * the introspection endpoint meanwhile (a cached introspection result expires
 * during a long run, and the gateway then asks again).
 */
function output(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] })
    const chunks: Buffer[] = []
    child.stdout.on('data', (c: Buffer) => chunks.push(c))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(new Error(`${cmd} exited with ${code}`))))
  })
}

/** A DPoP load: a proof signed per request by bench/load-dpop.mjs (see there), on the load core. */
interface DpopLoad {
  readonly scheme: 'DPoP' | 'Bearer'
  readonly tokenFile: string
  readonly keyFile: string
}

async function load(url: string, headers: Record<string, string>, seconds: number, script?: string, dpop?: DpopLoad, generator?: Target['generator']): Promise<Load> {
  if (generator) return JSON.parse(await output(...pinned(1, process.execPath, [join(ROOT, generator.script), url, String(CONNECTIONS), String(seconds), ...generator.args]))) as Load
  if (dpop) {
    const out = JSON.parse(await output(...pinned(1, process.execPath, [join(ROOT, 'bench/load-dpop.mjs'), url, String(CONNECTIONS), String(seconds), dpop.scheme, dpop.tokenFile, dpop.keyFile]))) as Load
    return out
  }
  if (WRK) {
    const args = ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency']
    for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`)
    if (script) args.push('-s', script)
    args.push(url)
    const out = await output(...pinned(1, 'wrk', args))
    const rps = Number(/Requests\/sec:\s+([0-9.]+)/.exec(out)?.[1] ?? 0)
    const non2xx = Number(/Non-2xx or 3xx responses:\s+([0-9]+)/.exec(out)?.[1] ?? 0)
    return { rps, p50: parseWrkLatency(out, '50'), p99: parseWrkLatency(out, '99'), non2xx }
  }
  const args = [join(ROOT, 'node_modules/autocannon/autocannon.js'), '-j', '-c', String(CONNECTIONS), '-d', String(seconds)]
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}=${v}`)
  args.push(url)
  const out = JSON.parse(await output(...pinned(1, process.execPath, args))) as {
    requests: { average: number }
    latency: { p50: number; p99: number }
    non2xx: number
  }
  return { rps: out.requests.average, p50: out.latency.p50, p99: out.latency.p99, non2xx: out.non2xx }
}

interface Target {
  name: string
  /** Process to measure CPU and memory of. */
  pid: () => number
  url: string
  headers: Record<string, string>
  /** Driven by the DPoP load generator instead (a fresh proof per request). */
  dpop?: DpopLoad
  /** Driven by a protocol's own load generator (bench/load-ws.mjs, bench/load-grpc.mjs), with its extra arguments. */
  generator?: { readonly script: string; readonly args: readonly string[] }
  /** Driven by a token stream: fresh (never-seen) or mixed tokens. */
  stream?: TokenStream
}

/** One measure of a target: its own kind of load. */
function measure(t: Target, seconds: number, round: number | 'warm'): Promise<Load> {
  if (t.stream) return streamLoad(t.url, t.stream, t.stream.hot ? seconds : Math.max(120, seconds), round)
  return load(t.url, t.headers, seconds, undefined, t.dpop, t.generator)
}

async function main(): Promise<void> {
  console.log(`bench: ${DURATION}s x ${ROUNDS} rounds, ${CONNECTIONS} connections, load: ${WRK ? 'wrk' : 'autocannon'}, pinning: ${PIN ? 'core 0 target, core 1 load+upstream' : 'off'}`)
  spawnSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' })

  // Keys and tokens of the benchmark; generated here, never stored.
  const keys: Record<PoolAlg, { privateKey: CryptoKey; jwk: JWK }> = {} as never
  for (const alg of ['RS256', 'ES256', 'EdDSA'] as const) {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
    keys[alg] = { privateKey, jwk: { ...(await exportJWK(publicKey)), kid: alg.toLowerCase(), alg, use: 'sig' } }
  }
  const jwksFile = join(WORK, 'jwks.json')
  writeFileSync(jwksFile, JSON.stringify({ keys: [keys.RS256.jwk, keys.ES256.jwk, keys.EdDSA.jwk] }))
  for (const alg of ['RS256', 'ES256'] as const) {
    writeFileSync(join(WORK, `${alg.toLowerCase()}.pem`), createPublicKey({ key: keys[alg].jwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' }))
  }
  // Pools of distinct tokens for the fresh-token and mixed rows, and the memory phase.
  const wants = (...names: string[]) => !ONLY || ONLY.some((o) => names.some((n) => n.startsWith(o) || o.startsWith(n)))
  const pools: Partial<Record<PoolAlg, string>> = {}
  let hotFile: string | undefined
  if (wants('gateway-fresh', 'haproxy-fresh', 'diy-fresh', 'gateway-mixed', 'haproxy-mixed')) {
    console.log(`signing ${FRESH_WARM + ROUNDS * FRESH_PER_ROUND} distinct tokens per algorithm for the fresh-token rows…`)
    for (const alg of ['RS256', 'ES256', 'EdDSA'] as const) {
      const file = join(WORK, `fresh-${alg}.txt`)
      await signPool(file, { alg, privateJwk: (await exportJWK(keys[alg].privateKey)) as Record<string, unknown>, kid: keys[alg].jwk.kid!, count: FRESH_WARM + ROUNDS * FRESH_PER_ROUND, issuer: ISSUER, audience: AUDIENCE, label: `fresh-${alg}` })
      pools[alg] = file
    }
    hotFile = join(WORK, 'hot-RS256.txt')
    await signPool(hotFile, { alg: 'RS256', privateJwk: (await exportJWK(keys.RS256.privateKey)) as Record<string, unknown>, kid: keys.RS256.jwk.kid!, count: 1_000, issuer: ISSUER, audience: AUDIENCE, label: 'hot' })
  }
  const freshStream = (alg: PoolAlg): TokenStream => ({ file: pools[alg]!, perRound: FRESH_PER_ROUND, warm: FRESH_WARM })
  // 90 % of requests carry one of 1,000 tokens the target has seen, 10 % a token it never saw.
  const mixedStream = (): TokenStream => ({ file: pools.RS256!, perRound: FRESH_PER_ROUND, warm: FRESH_WARM, hot: hotFile!, freshShare: 0.1 })
  const sign = (alg: 'RS256' | 'ES256', extra: Record<string, unknown> = {}) =>
    new SignJWT({ scope: 'read', client_id: 'bench', ...extra })
      .setProtectedHeader({ alg, kid: alg.toLowerCase(), typ: 'at+jwt' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject('bench')
      .setIssuedAt()
      .setExpirationTime('2h')
      .sign(keys[alg].privateKey)
  // Claims the claim-rule route reads (the plain JWT route carries them too: the same token on both).
  const ruled = { realm_access: { roles: ['staff', 'dev'] }, email_verified: true }
  const tokens = { RS256: await sign('RS256', ruled), ES256: await sign('ES256', ruled) }
  const opaque = 'bench-opaque-token-0123456789'

  // Introspection endpoint (hit once: the cache is warm while measuring).
  const introspectPort = await freePort()
  // Each token its own subject; a hundred clients between them (as a real issuer answers).
  const introspection = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => (body += c))
    req.on('end', () => {
      const token = new URLSearchParams(body).get('token') ?? ''
      const n = createHash('sha256').update(token).digest().readUInt32BE(0)
      res.setHeader('content-type', 'application/json')
      const now = Math.floor(Date.now() / 1000)
      res.end(JSON.stringify({ active: true, iss: `${ISSUER}/opaque`, aud: AUDIENCE, scope: 'read', client_id: `client-${n % 100}`, sub: `user-${n}`, token_type: 'Bearer', iat: now, exp: now + 7200 }))
    })
  }).listen(introspectPort, '127.0.0.1')

  const upPort = await freePort()
  const upstream = start(1, process.execPath, ['bench/targets/upstream.mjs', String(upPort)], 'upstream')
  await waitForPort(upPort, upstream, 'upstream')
  const upUrl = `http://127.0.0.1:${upPort}`

  const targets: Target[] = [{ name: 'direct', pid: () => upstream.pid!, url: `${upUrl}/`, headers: {} }]
  /** The Node targets again, for counting instructions (BENCH_INSTRUCTIONS). */
  const counted: InstructionTarget[] = []
  const launch = async (name: string, cmd: string, args: (port: number) => string[], path: string, headers: Record<string, string> = {}) => {
    if (ONLY && !ONLY.some((o) => name.startsWith(o))) return
    const port = await freePort()
    const child = start(0, cmd, args(port), name)
    await waitForPort(port, child, name)
    targets.push({ name, pid: () => child.pid!, url: `http://127.0.0.1:${port}${path}`, headers })
    if (cmd === process.execPath) counted.push({ process: name, args, scenarios: [{ name, path, headers }] })
  }
  const bearer = (t: string) => ({ Authorization: `Bearer ${t}` })
  await launch('node-floor', process.execPath, (p) => ['bench/targets/node-floor.mjs', String(p), upUrl], '/')
  await launch('http-proxy', process.execPath, (p) => ['bench/targets/http-proxy.mjs', String(p), upUrl], '/')
  await launch('fastify-http-proxy', process.execPath, (p) => ['bench/targets/fastify-http-proxy.mjs', String(p), upUrl], '/')
  for (const alg of ['RS256', 'ES256'] as const) {
    await launch(`diy-${alg}`, process.execPath, (p) => ['bench/targets/diy.mjs', String(p), upUrl, jwksFile, ISSUER, AUDIENCE, 'read'], '/x', bearer(tokens[alg]))
  }

  // This gateway: one process, one route per scenario.
  const gwPort = await freePort()
  const gatewayConfig = (port: number, extra = '', server = '') => {
    const file = join(WORK, `gateway-${port}.yaml`)
    writeFileSync(
      file,
      `${extra}server: { listen: "127.0.0.1:${port}"${server} }
admin: { listen: "127.0.0.1:0" }
identity_assertion: { issuer: https://gateway.bench }
upstreams:
  up: { url: "${upUrl}" }
  up-asserted: { url: "${upUrl}", assertion: true }
issuers:
  - { id: jwt, issuer: "${ISSUER}", keys: [{ file: jwks.json }], audiences: [${AUDIENCE}], algorithms: [RS256, ES256, EdDSA] }
  - id: opaque
    issuer: "${ISSUER}/opaque"
    audiences: [${AUDIENCE}]
    introspection: { endpoint: "http://127.0.0.1:${introspectPort}/introspect", client_id: bench, client_secret: bench, require_audience: false }
routes:
  - { id: public, match: { path: /public }, upstream: up, auth: public }
  - { id: jwt, match: { path: /jwt }, upstream: up, auth: { issuers: [jwt], scopes: { all_of: [read] } } }
  # DPoP-bound tokens with their proof (the default binding takes them on any route).
  - { id: dpop, match: { path: /dpop }, upstream: up, auth: { issuers: [jwt], scopes: { all_of: [read] } } }
  - { id: asserted, match: { path: /asserted }, upstream: up-asserted, auth: { issuers: [jwt], scopes: { all_of: [read] } } }
  - id: rules
    match: { path: "/rules/:tenant" }
    upstream: up
    auth:
      issuers: [jwt]
      scopes: { all_of: [read] }
      claims:
        - { claim: client_id, matches_path_param: tenant }
        - { claim: realm_access.roles, contains: staff }
        - { claim: email_verified, equals: true }
  - { id: opaque, match: { path: /opaque }, upstream: up, auth: { issuers: [opaque], scopes: { all_of: [read] } } }
  # One limit by identity that never refuses: what a decision costs (in Redis when it is configured).
  - id: limited
    match: { path: /limited }
    upstream: up
    auth: { issuers: [jwt], scopes: { all_of: [read] } }
    rate_limits: [{ id: per-client, requests: 1000000000, per: 1h, by: [client_id] }]
  - id: limited-batched
    match: { path: /limited-batched }
    upstream: up
    auth: { issuers: [jwt], scopes: { all_of: [read] } }
    rate_limits: [{ id: per-client, requests: 1000000000, per: 1h, by: [client_id], batch: 100 }]
`,
    )
    return file
  }
  let gateway: ChildProcess | undefined
  if (!ONLY || ONLY.some((o) => o.startsWith('gateway'))) {
    gateway = start(0, process.execPath, [...GATEWAY, 'start', '--config', gatewayConfig(gwPort)], 'gateway')
    children.push(gateway)
    await waitForPort(gwPort, gateway, 'gateway')
    const gw = `http://127.0.0.1:${gwPort}`
    await fetch(`${gw}/opaque`, { headers: bearer(opaque) }) // warm the introspection cache
    const scenarios = [
      { name: 'gateway-public', path: '/public', headers: {} },
      { name: 'gateway-jwt-RS256', path: '/jwt', headers: bearer(tokens.RS256) },
      { name: 'gateway-jwt-ES256', path: '/jwt', headers: bearer(tokens.ES256) },
      { name: 'gateway-jwt-rules-RS256', path: '/rules/bench', headers: bearer(tokens.RS256) },
      { name: 'gateway-jwt-assertion-RS256', path: '/asserted', headers: bearer(tokens.RS256) },
      { name: 'gateway-introspection', path: '/opaque', headers: bearer(opaque) },
    ].filter((t) => !ONLY || ONLY.some((o) => t.name.startsWith(o)))
    for (const t of scenarios) targets.push({ name: t.name, pid: () => gateway!.pid!, url: gw + t.path, headers: t.headers })
    counted.push({ process: 'gateway', args: (port) => [...GATEWAY, 'start', '--config', gatewayConfig(port)], scenarios })
  }

  // Sender-constrained tokens: one gateway process with a plain and an HTTPS listener. Its DPoP route
  // and its plain JWT route are both driven by the DPoP load generator (which signs a proof per request
  // for both, so the client's cost is the same on each side); its JWT route over HTTPS and over HTTP
  // by the usual load. Beside them, DPoP done by hand (node:https + jose), over HTTPS.
  if (!ONLY || ONLY.some((o) => o.startsWith('gateway-sc') || o.startsWith('diy-dpop'))) {
    const ca = await TestCa.create('Bench CA')
    const leaf = await ca.issue({ cn: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'] })
    writeFileSync(join(WORK, 'tls.crt'), leaf.cert)
    writeFileSync(join(WORK, 'tls.key'), leaf.key)
    const proofKey = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const publicJwk = proofKey.publicKey.export({ format: 'jwk' }) as Record<string, string>
    const keyFile = join(WORK, 'dpop-key.json')
    writeFileSync(keyFile, JSON.stringify({ privateKey: proofKey.privateKey.export({ format: 'jwk' }), publicKey: publicJwk }))
    const jkt = createHash('sha256').update(`{"crv":"P-256","kty":"EC","x":"${publicJwk.x}","y":"${publicJwk.y}"}`).digest('base64url')
    const dpopToken = await sign('RS256', { ...ruled, cnf: { jkt } })
    const dpopTokenFile = join(WORK, 'dpop-token.txt')
    writeFileSync(dpopTokenFile, dpopToken)
    const bearerTokenFile = join(WORK, 'rs256-token.txt')
    writeFileSync(bearerTokenFile, tokens.RS256)
    const port = await freePort()
    const tlsPort = await freePort()
    const file = gatewayConfig(port, '', `, tls: { listen: "127.0.0.1:${tlsPort}", cert: tls.crt, key: tls.key }`)
    const child = start(0, process.execPath, [...GATEWAY, 'start', '--config', file], 'gateway-sc')
    children.push(child)
    await waitForPort(port, child, 'gateway-sc')
    const plain = `http://127.0.0.1:${port}`
    const secure = `https://127.0.0.1:${tlsPort}`
    const add = (name: string, url: string, headers: Record<string, string>, dpop?: DpopLoad) => {
      if (!ONLY || ONLY.some((o) => name.startsWith(o) || o === 'gateway-sc')) targets.push({ name, pid: () => child.pid!, url, headers, ...(dpop ? { dpop } : {}) })
    }
    add('gateway-sc-dpop-RS256', `${plain}/dpop`, {}, { scheme: 'DPoP', tokenFile: dpopTokenFile, keyFile })
    add('gateway-sc-jwt-RS256-signing', `${plain}/jwt`, {}, { scheme: 'Bearer', tokenFile: bearerTokenFile, keyFile })
    add('gateway-sc-https-dpop-RS256', `${secure}/dpop`, {}, { scheme: 'DPoP', tokenFile: dpopTokenFile, keyFile })
    add('gateway-sc-jwt-RS256', `${plain}/jwt`, bearer(tokens.RS256))
    add('gateway-sc-https-jwt-RS256', `${secure}/jwt`, bearer(tokens.RS256))
    // Instructions: the DPoP route beside the plain JWT route, with a fresh proof per request made here
    // (TLS is left out: under valgrind OpenSSL runs without the CPU's AES and SHA instructions).
    const proofHeaders = (url: string) => () => {
      const header = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk: publicJwk })).toString('base64url')
      const payload = Buffer.from(JSON.stringify({ jti: randomBytes(12).toString('base64url'), htm: 'GET', htu: url, iat: Math.floor(Date.now() / 1000), ath: createHash('sha256').update(dpopToken).digest('base64url') })).toString('base64url')
      const input = `${header}.${payload}`
      return { Authorization: `DPoP ${dpopToken}`, DPoP: `${input}.${cryptoSign('sha256', Buffer.from(input), { key: proofKey.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}` }
    }
    counted.push({
      process: 'gateway-sc',
      args: (p) => [...GATEWAY, 'start', '--config', gatewayConfig(p)],
      scenarios: [
        { name: 'gateway-sc-jwt-RS256', path: '/jwt', headers: bearer(tokens.RS256) },
        { name: 'gateway-sc-dpop-RS256', path: '/dpop', headers: (origin: string) => proofHeaders(`${origin}/dpop`)() },
      ],
    })
    if (!ONLY || ONLY.some((o) => 'diy-dpop-https'.startsWith(o) || o.startsWith('diy-dpop'))) {
      const diyPort = await freePort()
      const diy = start(0, process.execPath, ['bench/targets/diy-dpop.mjs', String(diyPort), upUrl, jwksFile, ISSUER, AUDIENCE, join(WORK, 'tls.crt'), join(WORK, 'tls.key')], 'diy-dpop')
      await waitForPort(diyPort, diy, 'diy-dpop', true)
      targets.push({ name: 'diy-dpop-https', pid: () => diy.pid!, url: `https://127.0.0.1:${diyPort}/x`, headers: {}, dpop: { scheme: 'DPoP', tokenFile: dpopTokenFile, keyFile } })
    }
  }

  // Protocols: WebSocket round trips and gRPC unary calls (over h2c), each through the gateway (its JWT
  // checked on the upgrade or the call) beside the same load straight to the service.
  if (!ONLY || ONLY.some((o) => o.startsWith('gateway-protocols') || o.startsWith('direct-ws') || o.startsWith('direct-grpc'))) {
    const wsPort = await freePort()
    const ws = start(1, process.execPath, ['bench/targets/ws-echo.mjs', String(wsPort)], 'ws-echo')
    await waitForPort(wsPort, ws, 'ws-echo', true)
    const grpcPort = await freePort()
    const grpcEcho = start(1, process.execPath, ['bench/targets/grpc-echo.mjs', String(grpcPort)], 'grpc-echo')
    await waitForPort(grpcPort, grpcEcho, 'grpc-echo', true)
    const tokenFile = join(WORK, 'protocols-token.txt')
    writeFileSync(tokenFile, tokens.RS256)
    const port = await freePort()
    const h2cPort = await freePort()
    const file = join(WORK, `gateway-protocols-${port}.yaml`)
    writeFileSync(
      file,
      `server: { listen: "127.0.0.1:${port}", http2: { tls: false, cleartext_listen: "127.0.0.1:${h2cPort}" } }
admin: { listen: "127.0.0.1:0" }
upstreams:
  up: { url: "${upUrl}" }
  ws: { url: "http://127.0.0.1:${wsPort}" }
  grpc: { url: "http://127.0.0.1:${grpcPort}", http2: true }
issuers:
  - { id: jwt, issuer: "${ISSUER}", keys: [{ file: jwks.json }], audiences: [${AUDIENCE}], algorithms: [RS256, ES256, EdDSA] }
routes:
  - { id: public, match: { path: /public }, upstream: up, auth: public }
  - { id: jwt, match: { path: /jwt }, upstream: up, auth: { issuers: [jwt], scopes: { all_of: [read] } } }
  - { id: ws, match: { path: "/ws/*" }, upstream: ws, auth: { issuers: [jwt], scopes: { all_of: [read] } }, websocket: true }
  - { id: grpc, match: { path: "/bench.Echo/*", methods: [POST] }, upstream: grpc, auth: { issuers: [jwt], scopes: { all_of: [read] } } }
`,
    )
    const child = start(0, process.execPath, [...GATEWAY, 'start', '--config', file], 'gateway-protocols')
    children.push(child)
    await waitForPort(port, child, 'gateway-protocols')
    targets.push({ name: 'direct-ws', pid: () => ws.pid!, url: `ws://127.0.0.1:${wsPort}/`, headers: {}, generator: { script: 'bench/load-ws.mjs', args: [] } })
    targets.push({ name: 'gateway-protocols-ws-RS256', pid: () => child.pid!, url: `ws://127.0.0.1:${port}/ws/x`, headers: {}, generator: { script: 'bench/load-ws.mjs', args: [tokenFile] } })
    // h2c: the JWT route beside the public route, both over HTTP/2 (the same generator).
    targets.push({ name: 'gateway-protocols-h2c-public', pid: () => child.pid!, url: `http://127.0.0.1:${h2cPort}/public`, headers: {}, generator: { script: 'bench/load-grpc.mjs', args: ['-', 'get'] } })
    targets.push({ name: 'gateway-protocols-h2c-jwt-RS256', pid: () => child.pid!, url: `http://127.0.0.1:${h2cPort}/jwt`, headers: {}, generator: { script: 'bench/load-grpc.mjs', args: [tokenFile, 'get'] } })
    targets.push({ name: 'direct-grpc', pid: () => grpcEcho.pid!, url: `http://127.0.0.1:${grpcPort}/bench.Echo/Say`, headers: {}, generator: { script: 'bench/load-grpc.mjs', args: [] } })
    targets.push({ name: 'gateway-protocols-grpc-RS256', pid: () => child.pid!, url: `http://127.0.0.1:${h2cPort}/bench.Echo/Say`, headers: {}, generator: { script: 'bench/load-grpc.mjs', args: [tokenFile] } })
  }

  // Tracing at 1 % (parent-based ratio, OTLP/protobuf) to a collector that answers at once: the
  // same gateway otherwise, its JWT route beside the one without tracing.
  let sink: ReturnType<typeof createServer> | undefined
  if (!ONLY || ONLY.some((o) => o.startsWith('gateway-tracing'))) {
    const sinkPort = await freePort()
    sink = createServer((req, res) => {
      req.resume()
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/x-protobuf' })
        res.end()
      })
    }).listen(sinkPort, '127.0.0.1')
    const extra = `tracing: { endpoint: "http://127.0.0.1:${sinkPort}/v1/traces", sample_ratio: 0.01 }\n`
    const port = await freePort()
    const child = start(0, process.execPath, [...GATEWAY, 'start', '--config', gatewayConfig(port, extra)], 'gateway-tracing')
    children.push(child)
    await waitForPort(port, child, 'gateway-tracing')
    const scenario = { name: 'gateway-tracing-1pct-RS256', path: '/jwt', headers: bearer(tokens.RS256) }
    targets.push({ name: scenario.name, pid: () => child.pid!, url: `http://127.0.0.1:${port}${scenario.path}`, headers: scenario.headers })
    counted.push({ process: 'gateway-tracing', args: (p) => [...GATEWAY, 'start', '--config', gatewayConfig(p, extra)], scenarios: [scenario] })
  }

  // The cost of the denial check: the same gateway, with Redis, once with no revocations and once with
  // 10,000 in force (read from Redis at start); both separate processes, so the pair differs in that alone.
  const denialPrefixes: string[] = []
  // The rate-limit rows run in the first of them (the JWT route beside them is their baseline).
  if (!ONLY || ONLY.some((o) => o.startsWith('gateway-revocations') || 'gateway-revocations'.startsWith(o) || o.startsWith('gateway-ratelimit'))) {
    for (const [name, count] of [['gateway-revocations-none', 0], ['gateway-revocations-10k', Number(process.env.BENCH_DENIALS ?? 10_000)]] as const) {
      const prefix = await seedDenials(ISSUER, count)
      if (prefix === undefined) {
        console.log(`${name}: skipped (no Redis at ${BENCH_REDIS_URL})`)
        continue
      }
      denialPrefixes.push(prefix)
      const extra = `cache: { redis: { url: "${BENCH_REDIS_URL}", key_prefix: "${prefix}" } }\n`
      const port = await freePort()
      const child = start(0, process.execPath, [...GATEWAY, 'start', '--config', gatewayConfig(port, extra)], name)
      children.push(child)
      await waitForPort(port, child, name)
      await new Promise((r) => setTimeout(r, 500)) // stored revocations are read back once subscribed
      const scenarios = [{ name: `${name}-jwt-RS256`, path: '/jwt', headers: bearer(tokens.RS256) }]
      if (count === 0) {
        scenarios.push({ name: 'gateway-ratelimit-RS256', path: '/limited', headers: bearer(tokens.RS256) })
        scenarios.push({ name: 'gateway-ratelimit-batched-RS256', path: '/limited-batched', headers: bearer(tokens.RS256) })
      }
      for (const scenario of scenarios) targets.push({ name: scenario.name, pid: () => child.pid!, url: `http://127.0.0.1:${port}${scenario.path}`, headers: scenario.headers })
      counted.push({ process: name, args: (p) => [...GATEWAY, 'start', '--config', gatewayConfig(p, extra)], scenarios })
    }
  }

  // HAProxy jwt_verify (it verifies every token: it has no cache), one thread: RS256 on one frontend,
  // ES256 on another (jwt_verify takes one key file; HAProxy 2.6 has no EdDSA).
  const haproxyConfig = (port: number, esPort?: number) => {
    const cfg = join(WORK, `haproxy-${port}.cfg`)
    const frontend = (name: string, bind: number, alg: string) => `frontend ${name}
  bind 127.0.0.1:${bind}
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
  http-request deny deny_status 401 unless { var(txn.alg) -m str ${alg} }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"${join(WORK, `${alg.toLowerCase()}.pem`)}") -m int 1 }
  default_backend be
`
    writeFileSync(
      cfg,
      `global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
${frontend('fe', port, 'RS256')}${esPort === undefined ? '' : frontend('fe-es', esPort, 'ES256')}backend be
  http-reuse always
  server up 127.0.0.1:${upPort}
`,
    )
    return cfg
  }
  if (has('haproxy') && wants('haproxy')) {
    const port = await freePort()
    const esPort = await freePort()
    const child = start(0, 'haproxy', ['-f', haproxyConfig(port, esPort), '-db'], 'haproxy')
    await waitForPort(port, child, 'haproxy').catch(() => undefined)
    const add = (name: string, t: Omit<Target, 'name' | 'pid'>) => {
      if (wants(name)) targets.push({ name, pid: () => child.pid!, ...t })
    }
    add('haproxy-jwt-RS256', { url: `http://127.0.0.1:${port}/x`, headers: bearer(tokens.RS256) })
    if (pools.RS256) {
      add('haproxy-fresh-RS256', { url: `http://127.0.0.1:${port}/x`, headers: {}, stream: freshStream('RS256') })
      add('haproxy-fresh-ES256', { url: `http://127.0.0.1:${esPort}/x`, headers: {}, stream: freshStream('ES256') })
      add('haproxy-mixed-RS256', { url: `http://127.0.0.1:${port}/x`, headers: {}, stream: mixedStream() })
    }
    counted.push({
      process: 'haproxy',
      command: 'haproxy',
      args: (p) => ['-f', haproxyConfig(p), '-db'],
      scenarios: [{ name: 'haproxy-jwt-RS256', path: '/x', headers: bearer(tokens.RS256) }],
    })
  }
  // nginx: a reverse proxy without authentication, one worker (the floor of a C proxy).
  const nginxConfig = (port: number) => {
    const prefix = join(WORK, `nginx-${port}`)
    mkdirSync(join(prefix, 'logs'), { recursive: true })
    writeFileSync(
      join(prefix, 'nginx.conf'),
      `worker_processes 1; daemon off; master_process off; pid ${prefix}/nginx.pid; error_log ${prefix}/logs/error.log;
events { worker_connections 4096; }
http { access_log off; upstream up { server 127.0.0.1:${upPort}; keepalive 64; }
  server { listen 127.0.0.1:${port}; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
`,
    )
    return ['-p', prefix, '-c', join(prefix, 'nginx.conf')]
  }
  if (has('nginx') && wants('nginx')) {
    const port = await freePort()
    const child = start(0, 'nginx', nginxConfig(port), 'nginx')
    await waitForPort(port, child, 'nginx').catch(() => undefined)
    targets.push({ name: 'nginx', pid: () => child.pid!, url: `http://127.0.0.1:${port}/`, headers: {} })
    counted.push({ process: 'nginx', command: 'nginx', args: nginxConfig, scenarios: [{ name: 'nginx', path: '/', headers: {} }] })
  }

  // Fresh tokens: a gateway process of its own (its verified-token cache never holds them), each
  // algorithm's pool sent once, beside HAProxy and the do-it-yourself peer on the same streams.
  // Mixed: another gateway process, 1,000 hot tokens and a tenth never seen.
  if (pools.RS256) {
    for (const [name, rows] of [
      ['gateway-fresh', (['RS256', 'ES256', 'EdDSA'] as const).map((alg) => [`gateway-fresh-${alg}`, freshStream(alg)] as const)],
      ['gateway-mixed', [['gateway-mixed-RS256', mixedStream()] as const]],
    ] as const) {
      if (!rows.some(([row]) => wants(row))) continue
      const port = await freePort()
      const child = start(0, process.execPath, [...GATEWAY, 'start', '--config', gatewayConfig(port)], name)
      children.push(child)
      await waitForPort(port, child, name)
      for (const [row, stream] of rows) if (wants(row)) targets.push({ name: row, pid: () => child.pid!, url: `http://127.0.0.1:${port}/jwt`, headers: {}, stream })
    }
    const diy = targets.find((t) => t.name === 'diy-RS256')
    if (diy) for (const alg of ['RS256', 'ES256', 'EdDSA'] as const) if (wants(`diy-fresh-${alg}`)) targets.push({ ...diy, name: `diy-fresh-${alg}`, headers: {}, stream: freshStream(alg) })
    // Instructions: the gateway on fresh RS256 tokens (a process of its own, a token per request).
    const pool = readFileSync(pools.RS256, 'utf8').split('\n').filter((l) => l.length > 0)
    let next = 0
    counted.push({
      process: 'gateway-fresh',
      args: (p) => [...GATEWAY, 'start', '--config', gatewayConfig(p)],
      scenarios: [{ name: 'gateway-fresh-RS256', path: '/jwt', headers: () => ({ Authorization: `Bearer ${pool[next++ % pool.length]}` }) }],
    })
  }

  // Warm up (not in --quick: a smoke run), then interleaved rounds.
  if (!QUICK) for (const t of targets) await measure(t, 1, 'warm')
  const results = new Map<string, Array<Load & { cpuUsPerReq: number }>>()
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? targets : [...targets].reverse()
    for (const t of order) {
      const before = cpuTicks(t.pid())
      const r = await measure(t, DURATION, round)
      const ticks = cpuTicks(t.pid()) - before
      const cpuUsPerReq = r.rps > 0 ? ((ticks / CLK_TCK) * 1e6) / (r.rps * (r.seconds ?? DURATION)) : NaN
      if (r.non2xx > 0) console.warn(`  ${t.name}: ${r.non2xx} non-2xx responses`)
      if ((r.repeats ?? 0) > 0) console.warn(`  ${t.name}: ${r.repeats} requests reused a token (the pool ran out)`)
      results.set(t.name, [...(results.get(t.name) ?? []), { ...r, cpuUsPerReq }])
      console.log(`  round ${round + 1} ${t.name.padEnd(22)} ${r.rps.toFixed(0).padStart(7)} req/s`)
    }
  }

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const summary: Record<string, { rps: number; p50_ms: number; p99_ms: number; cpu_us_per_req: number; peak_rss_mb: number; vs_direct: number }> = {}
  const direct = median(results.get('direct')!.map((r) => r.rps))
  for (const t of targets) {
    const rs = results.get(t.name)!
    const rps = median(rs.map((r) => r.rps))
    summary[t.name] = {
      rps: Math.round(rps),
      p50_ms: median(rs.map((r) => r.p50)),
      p99_ms: median(rs.map((r) => r.p99)),
      cpu_us_per_req: Math.round(median(rs.map((r) => r.cpuUsPerReq)) * 10) / 10,
      peak_rss_mb: Math.round(peakRssMb(t.pid())),
      vs_direct: Math.round((rps / direct) * 100) / 100,
    }
  }

  // Latency under a fixed offered load (open loop): half of HAProxy's closed-loop maximum (of the
  // gateway's JWT route without HAProxy), the same rate for every target, so tails compare.
  const openBase = summary['haproxy-jwt-RS256'] ? 'haproxy-jwt-RS256' : 'gateway-jwt-RS256'
  const openRate = Math.round((summary[openBase]?.rps ?? 0) / 2)
  const openLoop: Array<{ name: string; rps: number; p50: number; p99: number; p999: number }> = []
  if (openRate > 0) {
    const chosen = QUICK ? ['direct', 'haproxy-jwt-RS256', 'gateway-jwt-RS256'] : ['direct', 'nginx', 'haproxy-jwt-RS256', 'gateway-public', 'gateway-jwt-RS256', 'gateway-introspection', 'diy-RS256']
    const open = chosen.map((n) => targets.find((t) => t.name === n)).filter((t): t is Target => t !== undefined)
    const rows = new Map<string, Load[]>()
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of round % 2 === 0 ? open : [...open].reverse()) {
        const args = [join(ROOT, 'bench/load-http.mjs'), t.url, String(CONNECTIONS), String(DURATION), '--rate', String(openRate)]
        for (const [k, v] of Object.entries(t.headers)) args.push('--header', `${k}: ${v}`)
        const r = JSON.parse(await output(...pinned(1, process.execPath, args))) as Load
        rows.set(t.name, [...(rows.get(t.name) ?? []), r])
      }
    }
    for (const [name, rs] of rows) {
      openLoop.push({ name, rps: Math.round(median(rs.map((r) => r.rps))), p50: median(rs.map((r) => r.p50)), p99: median(rs.map((r) => r.p99)), p999: median(rs.map((r) => r.p999 ?? NaN)) })
    }
  }

  // Every target is measured: stop them all but the upstream, so that none goes on collecting its garbage
  // or waking for its timers on core 0 while the memory phase times pauses there (an idle gateway's full
  // collection is tens of ms of that core).
  for (const child of children) if (child !== upstream) child.kill('SIGKILL')

  // Memory per cached entry, and the cost of each signature verification path (both in their own processes).
  let entryBytes: { jwt: number; introspection: number; introspectionOnce: number } | undefined
  let verification: Record<string, { node: number; webcrypto: number }> | undefined
  if (wants('memory')) entryBytes = JSON.parse(await output(process.execPath, ['--expose-gc', join(ROOT, 'bench/entry-bytes.mjs'), String(QUICK ? 10_000 : 100_000)])) as typeof entryBytes
  if (wants('gateway-fresh')) verification = JSON.parse(await output(...pinned(0, process.execPath, [join(ROOT, 'bench/verify-paths.mjs'), String(QUICK ? 500 : 5_000)]))) as typeof verification

  // Memory and pauses: twice the default cache bound of distinct tokens of each kind, each kind through
  // a gateway of its own (default cache settings), as fast as ten connections go, probed meanwhile.
  const memory: MemoryResult[] = []
  if (MEMORY_TOKENS > 0 && wants('memory')) {
    const warm = 1_000
    const jwtFile = join(WORK, 'memory-jwt.txt')
    console.log(`memory: signing ${MEMORY_TOKENS + warm} distinct ES256 tokens…`)
    await signPool(jwtFile, { alg: 'ES256', privateJwk: (await exportJWK(keys.ES256.privateKey)) as Record<string, unknown>, kid: keys.ES256.jwk.kid!, count: MEMORY_TOKENS + warm, issuer: ISSUER, audience: AUDIENCE, label: 'memory' })
    const opaqueFile = join(WORK, 'memory-opaque.txt')
    writeFileSync(opaqueFile, Array.from({ length: MEMORY_TOKENS + warm }, () => randomBytes(32).toString('base64url')).join('\n') + '\n')
    for (const [kind, file, path] of [['JWTs', jwtFile, '/jwt'], ['introspection results', opaqueFile, '/opaque']] as const) {
      const port = await freePort()
      const adminPort = await freePort()
      const config = join(WORK, `memory-${port}.yaml`)
      writeFileSync(
        config,
        readFileSync(gatewayConfig(port), 'utf8').replace('admin: { listen: "127.0.0.1:0" }', `admin: { listen: "127.0.0.1:${adminPort}" }`),
      )
      const child = start(0, process.execPath, [...GATEWAY, 'start', '--config', config], `memory-${kind}`)
      children.push(child)
      await waitForPort(port, child, `memory-${kind}`)
      const stream: TokenStream = { file, perRound: MEMORY_TOKENS, warm }
      const url = `http://127.0.0.1:${port}${path}`
      await streamLoad(url, stream, 120, 'warm')
      console.log(`memory: ${MEMORY_TOKENS} distinct ${kind}…`)
      const result = await memoryPhase({
        kind,
        pid: child.pid!,
        adminUrl: `http://127.0.0.1:${adminPort}`,
        tokens: MEMORY_TOKENS,
        load: async () => {
          // Ten connections: the loop's delay then shows pauses, not fifty requests queued for their turn.
          const r = await streamLoad(url, stream, 900, 0, 10)
          if (r.non2xx > 0) console.warn(`  memory ${kind}: ${r.non2xx} non-2xx responses`)
          return r.rps
        },
      })
      memory.push(result)
      child.kill('SIGKILL')
    }
  }

  // Instructions per request (optional; minutes per target under valgrind).
  let instructions: Record<string, number> | undefined
  if (INSTRUCTIONS > 0) {
    if (canCountInstructions()) {
      console.log(`instructions: ${INSTRUCTIONS} requests per scenario under callgrind…`)
      // By default the comparison with HAProxy and nginx only (every Node target takes minutes under valgrind).
      const comparison = new Set(['gateway-public', 'gateway-jwt-RS256', 'gateway-fresh-RS256', 'haproxy-jwt-RS256', 'nginx'])
      const chosen = process.env.BENCH_INSTRUCTIONS_ALL ? counted : counted.map((t) => ({ ...t, scenarios: t.scenarios.filter((s) => comparison.has(s.name)) }))
      instructions = Object.fromEntries(await countInstructions(chosen, { requests: INSTRUCTIONS, cwd: ROOT, work: WORK, freePort }))
    } else {
      console.log('instructions: skipped (needs valgrind)')
    }
  }

  // A ratio is the median over rounds of the two targets' throughputs in the same round (measured
  // back to back, so slow drifts of the machine cancel out); its spread is the lowest and highest round.
  const perRound = (a: string, b: string) => {
    const ra = results.get(a)
    const rb = results.get(b)
    if (!ra || !rb) return undefined
    return ra.map((r, i) => r.rps / rb[i]!.rps).filter((x) => Number.isFinite(x))
  }
  const ratio = (a: string, b: string) => {
    const xs = perRound(a, b)
    return xs?.length ? Math.round(median(xs) * 100) / 100 : undefined
  }
  const spread = (a: string, b: string) => {
    const xs = perRound(a, b)
    return xs?.length ? `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}` : ''
  }
  const compare = (check: string, a: string, b: string) => ({ check, value: ratio(a, b), rounds: spread(a, b) })
  const targetsMet = [
    { ...compare('JWT route (RS256) / own public route', 'gateway-jwt-RS256', 'gateway-public'), goal: 0.9 },
    { ...compare('JWT route (ES256) / own public route', 'gateway-jwt-ES256', 'gateway-public'), goal: 0.9 },
    { ...compare('JWT route / do-it-yourself (RS256)', 'gateway-jwt-RS256', 'diy-RS256'), goal: 2 },
    { ...compare('JWT route / do-it-yourself (ES256)', 'gateway-jwt-ES256', 'diy-ES256'), goal: 2 },
    { ...compare('introspection (warm) / JWT route (RS256)', 'gateway-introspection', 'gateway-jwt-RS256'), goal: 0.9 },
    { ...compare('JWT route + 3 claim rules / JWT route (RS256)', 'gateway-jwt-rules-RS256', 'gateway-jwt-RS256'), goal: 0.95 },
    { ...compare('JWT route + signed assertion / JWT route (RS256)', 'gateway-jwt-assertion-RS256', 'gateway-jwt-RS256'), goal: 0.85 },
    { ...compare('JWT route, 10,000 revocations / none (RS256, Redis)', 'gateway-revocations-10k-jwt-RS256', 'gateway-revocations-none-jwt-RS256'), goal: 0.95 },
    { ...compare('JWT route + 1 limit in Redis / JWT route (RS256, Redis)', 'gateway-ratelimit-RS256', 'gateway-revocations-none-jwt-RS256'), goal: 0.9 },
    { ...compare('JWT route + 1 limit, batch 100 / JWT route (Redis)', 'gateway-ratelimit-batched-RS256', 'gateway-revocations-none-jwt-RS256'), goal: 0.9 },
    { ...compare('JWT route, tracing at 1 % / tracing off (RS256)', 'gateway-tracing-1pct-RS256', 'gateway-jwt-RS256'), goal: 0.95 },
    { ...compare('DPoP route / JWT route (RS256, same signing client)', 'gateway-sc-dpop-RS256', 'gateway-sc-jwt-RS256-signing'), goal: 0.7 },
    { ...compare('DPoP over HTTPS / do-it-yourself (node:https + jose)', 'gateway-sc-https-dpop-RS256', 'diy-dpop-https'), goal: 2 },
    { ...compare('JWT route over HTTPS / over HTTP (RS256)', 'gateway-sc-https-jwt-RS256', 'gateway-sc-jwt-RS256'), goal: 0.7 },
    { ...compare('WebSocket round trips through the gateway / direct', 'gateway-protocols-ws-RS256', 'direct-ws'), goal: 0.8 },
    { ...compare('JWT route / public route, both over h2c (RS256)', 'gateway-protocols-h2c-jwt-RS256', 'gateway-protocols-h2c-public'), goal: 0.9 },
    { ...compare('public route / fastify + @fastify/http-proxy', 'gateway-public', 'fastify-http-proxy'), goal: 1.2 },
    { ...compare('JWT route / HAProxy jwt_verify (RS256, stretch)', 'gateway-jwt-RS256', 'haproxy-jwt-RS256'), goal: 1 },
    { ...compare('fresh tokens (RS256) / HAProxy jwt_verify, same stream', 'gateway-fresh-RS256', 'haproxy-fresh-RS256'), goal: 0.8 },
    { ...compare('fresh tokens (RS256) / do-it-yourself, same stream', 'gateway-fresh-RS256', 'diy-fresh-RS256'), goal: 3 },
    { ...compare('fresh tokens (ES256) / do-it-yourself, same stream', 'gateway-fresh-ES256', 'diy-fresh-ES256'), goal: 3 },
    { ...compare('fresh tokens (EdDSA) / do-it-yourself, same stream', 'gateway-fresh-EdDSA', 'diy-fresh-EdDSA'), goal: 3 },
  ]
  // No goals: how far the gateway is from the least a Node proxy can do, and where HAProxy stands against that.
  const context = [
    compare('public route / Node floor (node:http + undici)', 'gateway-public', 'node-floor'),
    compare('JWT route (RS256) / Node floor', 'gateway-jwt-RS256', 'node-floor'),
    compare('HAProxy jwt_verify / Node floor', 'haproxy-jwt-RS256', 'node-floor'),
    compare('gRPC unary over h2c through the gateway / direct', 'gateway-protocols-grpc-RS256', 'direct-grpc'),
    compare('fresh tokens (ES256) / HAProxy jwt_verify, same stream', 'gateway-fresh-ES256', 'haproxy-fresh-ES256'),
    compare('mixed 90 % seen, 10 % fresh (RS256) / HAProxy', 'gateway-mixed-RS256', 'haproxy-mixed-RS256'),
    compare('mixed (RS256) / the same route, one token', 'gateway-mixed-RS256', 'gateway-jwt-RS256'),
  ]

  console.log('\ntarget                   req/s  vs direct  p50 ms  p99 ms  CPU µs/req  peak RSS MB')
  for (const [name, s] of Object.entries(summary)) {
    console.log(
      `${name.padEnd(22)} ${String(s.rps).padStart(7)}  ${s.vs_direct.toFixed(2).padStart(9)}  ${s.p50_ms.toFixed(2).padStart(6)}  ${s.p99_ms.toFixed(2).padStart(6)}  ${s.cpu_us_per_req.toFixed(1).padStart(10)}  ${String(s.peak_rss_mb).padStart(11)}`,
    )
  }
  console.log('\nratio (median of the rounds)                       value     rounds  goal')
  for (const t of targetsMet) {
    if (t.value === undefined) continue
    console.log(`${t.check.padEnd(50)} ${t.value.toFixed(2).padStart(5)}  ${t.rounds.padStart(9)}  ≥ ${t.goal}  ${t.value >= t.goal ? 'met' : 'NOT met'}`)
  }
  for (const t of context) if (t.value !== undefined) console.log(`${t.check.padEnd(50)} ${t.value.toFixed(2).padStart(5)}  ${t.rounds.padStart(9)}`)
  // What a rate-limit decision adds to the slowest answers (medians of the rounds' p99).
  for (const [label, name] of [['1 limit in Redis', 'gateway-ratelimit-RS256'], ['1 limit, batch 100', 'gateway-ratelimit-batched-RS256']] as const) {
    const base = summary['gateway-revocations-none-jwt-RS256']
    const with_ = summary[name]
    if (base && with_) console.log(`p99 added by ${label}: ${(with_.p99_ms - base.p99_ms).toFixed(2)} ms (${base.p99_ms.toFixed(2)} → ${with_.p99_ms.toFixed(2)})`)
  }
  if (instructions) {
    // Fewer instructions is faster: each ratio is the baseline's count over the gateway's.
    const per = (a: string, b: string) => (instructions![a] && instructions![b] ? Math.round((instructions![b] / instructions![a]) * 100) / 100 : undefined)
    console.log('\ninstructions per request (event-loop thread, callgrind)')
    for (const [name, n] of Object.entries(instructions)) console.log(`${name.padEnd(22)} ${(n / 1000).toFixed(1).padStart(8)}k`)
    for (const [check, value] of [
      ['public route vs fastify + @fastify/http-proxy', per('gateway-public', 'fastify-http-proxy')],
      ['JWT route (RS256) vs own public route', per('gateway-jwt-RS256', 'gateway-public')],
      ['introspection (warm) vs JWT route (RS256)', per('gateway-introspection', 'gateway-jwt-RS256')],
      ['JWT route + 3 claim rules vs JWT route (RS256)', per('gateway-jwt-rules-RS256', 'gateway-jwt-RS256')],
      ['JWT route + signed assertion vs JWT route (RS256)', per('gateway-jwt-assertion-RS256', 'gateway-jwt-RS256')],
      ['JWT route, 10,000 revocations vs none (RS256, Redis)', per('gateway-revocations-10k-jwt-RS256', 'gateway-revocations-none-jwt-RS256')],
      ['JWT route + 1 limit in Redis vs JWT route (Redis)', per('gateway-ratelimit-RS256', 'gateway-revocations-none-jwt-RS256')],
      ['JWT route + 1 limit, batch 100 vs JWT route (Redis)', per('gateway-ratelimit-batched-RS256', 'gateway-revocations-none-jwt-RS256')],
      ['JWT route, tracing at 1 % vs off (RS256)', per('gateway-tracing-1pct-RS256', 'gateway-jwt-RS256')],
      ['DPoP route vs JWT route (RS256, fresh proof each)', per('gateway-sc-dpop-RS256', 'gateway-sc-jwt-RS256')],
      ['public route vs Node floor', per('gateway-public', 'node-floor')],
      ['JWT route (RS256) vs HAProxy jwt_verify (the moonshot: ≥ 1)', per('gateway-jwt-RS256', 'haproxy-jwt-RS256')],
      ['fresh RS256 tokens vs HAProxy jwt_verify', per('gateway-fresh-RS256', 'haproxy-jwt-RS256')],
      ['public route vs nginx (no authentication)', per('gateway-public', 'nginx')],
    ] as const) {
      if (value !== undefined) console.log(`${check.padEnd(50)} ${value.toFixed(2).padStart(5)}`)
    }
  }
  if (openLoop.length > 0) {
    console.log(`\nopen loop: ${openRate} requests/s offered to each (half of ${openBase}'s closed-loop req/s), latency from when each was due, ms`)
    console.log('target                    p50      p99    p99.9   achieved req/s')
    for (const o of openLoop) console.log(`${o.name.padEnd(22)} ${o.p50.toFixed(2).padStart(6)} ${o.p99.toFixed(2).padStart(8)} ${o.p999.toFixed(2).padStart(8)}   ${String(o.rps).padStart(7)}`)
  }
  if (memory.length > 0) {
    console.log('\nmemory: distinct tokens through a gateway of their own (default cache: 100,000 entries), probed every 100 ms')
    console.log('kind                     tokens   req/s  RSS at start  peak RSS  probe p99/max ms  event loop p99/max ms')
    for (const m of memory) {
      console.log(
        `${m.kind.padEnd(22)} ${String(m.tokens).padStart(8)} ${String(m.rps).padStart(7)} ${String(m.rss_start_mb).padStart(10)} MB ${String(m.peak_rss_mb).padStart(6)} MB  ${`${m.probe_p99_ms}/${m.probe_max_ms}`.padStart(16)}  ${`${m.event_loop_p99_ms}/${m.event_loop_max_ms}`.padStart(20)}`,
      )
    }
    for (const m of memory) {
      console.log(`  ${m.kind}: peak RSS ${m.peak_rss_mb} MB (goal ≤ 250) ${m.peak_rss_mb <= 250 ? 'met' : 'NOT met'}; longest stall ${Math.max(m.event_loop_max_ms, m.probe_max_ms)} ms (goal ≤ 50) ${Math.max(m.event_loop_max_ms, m.probe_max_ms) <= 50 ? 'met' : 'NOT met'}`)
    }
  }
  if (entryBytes) {
    console.log(
      `\nbytes per cached entry (heap after a full collection, 100,000 entries): JWT ${entryBytes.jwt}, introspection result ${entryBytes.introspection} (${entryBytes.introspectionOnce} for a token used once)`,
    )
  }
  if (verification) {
    console.log('\nsignature verification, µs of CPU per token on one core (node:crypto is what the gateway uses)')
    for (const [alg, v] of Object.entries(verification)) console.log(`${alg.padEnd(8)} node:crypto ${v.node.toFixed(1).padStart(6)}   WebCrypto ${v.webcrypto.toFixed(1).padStart(6)}`)
  }

  const outDir = join(ROOT, 'bench/results')
  mkdirSync(outDir, { recursive: true })
  const out = join(outDir, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
  writeFileSync(out, JSON.stringify({ settings: { DURATION, ROUNDS, CONNECTIONS, QUICK, FRESH_PER_ROUND, MEMORY_TOKENS, wrk: WRK, pinned: PIN }, summary, ratios: targetsMet, context, openLoop: { rate: openRate, base: openBase, rows: openLoop }, memory, entryBytes, verification, instructions }, null, 2))
  console.log(`\nwrote ${out}`)
  introspection.close()
  sink?.close()
  for (const prefix of denialPrefixes) await deletePrefix(prefix)
}

const BENCH_REDIS_URL = process.env.BENCH_REDIS_URL ?? process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

/** Stores `count` revocations (of tokens the bench never sends) as the gateway stores them; their key prefix, or undefined without Redis. */
async function seedDenials(issuer: string, count: number): Promise<string | undefined> {
  const redis = new Redis(BENCH_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 })
  redis.on('error', () => undefined)
  try {
    await redis.connect()
    const prefix = `gwbench:${process.pid}:${Date.now()}:`
    const until = Math.floor(Date.now() / 1000) + 7200
    const pipeline = redis.pipeline()
    for (let i = 0; i < count; i++) {
      const denial = { kind: i % 10 === 0 ? 'sub' : 'jti', issuer, id: `revoked-${i}`, ...(i % 10 === 0 ? { before: until - 7200 } : {}), until }
      pipeline.set(`${prefix}revoked:${denial.kind}:${i}`, JSON.stringify(denial), 'EX', 7200)
    }
    await pipeline.exec()
    return prefix
  } catch {
    return undefined
  } finally {
    redis.disconnect()
  }
}

async function deletePrefix(prefix: string): Promise<void> {
  const redis = new Redis(BENCH_REDIS_URL, { maxRetriesPerRequest: 0 })
  redis.on('error', () => undefined)
  try {
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
      if (keys.length) await redis.del(...keys)
      cursor = next
    } while (cursor !== '0')
  } catch {
    // Left to expire (two hours).
  } finally {
    redis.disconnect()
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  },
)
