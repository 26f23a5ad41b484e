import { pathSegments, type Pattern } from './pattern.js'

/**
 * What the router needs to know of a route. The router is generic over the
 * rest so that it stays a pure, separately testable piece.
 */
export interface RouteSpec {
  readonly id: string
  /** Upper-case methods, or null for every method. */
  readonly methods: readonly string[] | null
  /** Lower-case host, `*.example.com`, or null for every host. */
  readonly host: string | null
  readonly pattern: Pattern
}

export interface Match<R extends RouteSpec> {
  readonly route: R
  readonly params: Readonly<Record<string, string>>
}

export class RouteConflictError extends Error {
  override name = 'RouteConflictError'
  constructor(
    message: string,
    readonly routeId: string,
    readonly otherRouteId: string,
  ) {
    super(message)
  }
}

interface Node<R> {
  statics: Map<string, Node<R>>
  param: Node<R> | undefined
  paramName: string | undefined
  /** Routes ending exactly at this node. */
  here: Terminal<R> | undefined
  /** Routes whose pattern ends with `*` after this node. */
  rest: Terminal<R> | undefined
}

/** The routes sharing one pattern shape: one per method, plus one for any method. */
interface Terminal<R> {
  byMethod: Map<string, R>
  anyMethod: R | undefined
  /** Parameter names per route, in segment order, for reporting params. */
  paramNames: Map<R, string[]>
}

function newNode<R>(): Node<R> {
  return { statics: new Map(), param: undefined, paramName: undefined, here: undefined, rest: undefined }
}

/**
 * Finds the most specific route for a request.
 *
 * Precedence, documented in the README:
 * 1. routes for the exact request host, then wildcard hosts (longest suffix
 *    first), then routes without a host;
 * 2. within those, segment by segment from the left: a static segment beats a
 *    `:param`, which beats a trailing `*`; a longer match beats a `*` that
 *    would also match;
 * 3. for one pattern, a route listing the method beats a route without methods
 *    (a route listing GET also serves HEAD, unless another lists HEAD).
 * If the most specific path has no route for the method, less specific
 * patterns are tried; if nothing matches, there is no route (404).
 */
export class Router<R extends RouteSpec> {
  private readonly exactHosts = new Map<string, Node<R>>()
  private readonly wildcardHosts: Array<{ suffix: string; root: Node<R> }> = []
  private readonly anyHost = newNode<R>()
  readonly routes: readonly R[]

  constructor(routes: readonly R[]) {
    this.routes = routes
    for (const route of routes) this.insert(route)
    this.wildcardHosts.sort((a, b) => b.suffix.length - a.suffix.length)
  }

  private rootFor(host: string | null): Node<R> {
    if (host === null) return this.anyHost
    if (host.startsWith('*.')) {
      const suffix = host.slice(1)
      let entry = this.wildcardHosts.find((w) => w.suffix === suffix)
      if (!entry) this.wildcardHosts.push((entry = { suffix, root: newNode() }))
      return entry.root
    }
    let root = this.exactHosts.get(host)
    if (!root) this.exactHosts.set(host, (root = newNode()))
    return root
  }

  private insert(route: R): void {
    let node = this.rootFor(route.host)
    const paramNames: string[] = []
    let wildcard = false
    for (const segment of route.pattern.segments) {
      if (segment.kind === 'static') {
        let next = node.statics.get(segment.value)
        if (!next) node.statics.set(segment.value, (next = newNode()))
        node = next
      } else if (segment.kind === 'param') {
        node.param ??= newNode()
        node = node.param
        paramNames.push(segment.name)
      } else {
        wildcard = true
      }
    }
    const terminal = wildcard ? (node.rest ??= newTerminal()) : (node.here ??= newTerminal())
    terminal.paramNames.set(route, paramNames)
    if (route.methods === null) {
      if (terminal.anyMethod) throw conflict(route, terminal.anyMethod)
      terminal.anyMethod = route
      return
    }
    for (const method of route.methods) {
      const other = terminal.byMethod.get(method)
      if (other) throw conflict(route, other, method)
      terminal.byMethod.set(method, route)
    }
  }

  match(method: string, host: string, path: string): Match<R> | undefined {
    const segments = pathSegments(path)
    const values: string[] = []
    const exact = this.exactHosts.get(host)
    if (exact) {
      const found = find(exact, segments, 0, method, values)
      if (found) return found
    }
    for (const { suffix, root } of this.wildcardHosts) {
      if (host.length > suffix.length && host.endsWith(suffix)) {
        const found = find(root, segments, 0, method, values)
        if (found) return found
      }
    }
    return find(this.anyHost, segments, 0, method, values)
  }
}

function newTerminal<R>(): Terminal<R> {
  return { byMethod: new Map(), anyMethod: undefined, paramNames: new Map() }
}

function conflict<R extends RouteSpec>(route: R, other: R, method?: string): RouteConflictError {
  const what = method ? `${method} requests` : 'requests of every method'
  const host = route.host ? ` on host ${route.host}` : ''
  return new RouteConflictError(
    `routes "${other.id}" and "${route.id}" both match ${what} to ${route.pattern.source}${host}; remove one or make their methods or hosts differ`,
    route.id,
    other.id,
  )
}

/** The route for a method at one pattern; HEAD is served by the route for GET unless a route names HEAD. */
function pick<R>(terminal: Terminal<R> | undefined, method: string): R | undefined {
  if (!terminal) return undefined
  return terminal.byMethod.get(method) ?? (method === 'HEAD' ? terminal.byMethod.get('GET') : undefined) ?? terminal.anyMethod
}

function find<R extends RouteSpec>(node: Node<R>, segments: string[], index: number, method: string, values: string[]): Match<R> | undefined {
  if (index === segments.length) {
    const route = pick(node.here, method)
    if (route) return result(node.here!, route, values)
  } else {
    const segment = segments[index]!
    const child = node.statics.get(segment)
    if (child) {
      const found = find(child, segments, index + 1, method, values)
      if (found) return found
    }
    if (node.param) {
      values.push(segment)
      const found = find(node.param, segments, index + 1, method, values)
      if (found) return found
      values.pop()
    }
  }
  const route = pick(node.rest, method)
  if (route) return result(node.rest!, route, values)
  return undefined
}

function result<R extends RouteSpec>(terminal: Terminal<R>, route: R, values: string[]): Match<R> {
  const names = terminal.paramNames.get(route) ?? []
  const params: Record<string, string> = {}
  for (let i = 0; i < names.length; i++) params[names[i]!] = values[i]!
  return { route, params }
}

