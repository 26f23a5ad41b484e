/**
 * Outbound calls, observed. Stages that call out (the JWKS and introspection
 * clients, Redis, the forwarder) tell this module when a call starts and
 * ends, and add the headers it gives them (W3C traceparent) to the call;
 * they never import a tracer. The observer is the request's own, handed
 * down with the call (no async context is kept: on Node 20 that would cost
 * every promise of the process); with none (tracing off, or a call no
 * request made) every function here returns at once and allocates nothing.
 */

export type CallKind = 'jwks' | 'introspection' | 'discovery' | 'redis' | 'upstream'

/** A call in progress. */
export interface ObservedCall {
  /** Headers the call should carry (traceparent, and tracestate when there is one); undefined for none. */
  readonly headers: Readonly<Record<string, string>> | undefined
  /** The call ended: with an HTTP status, or a failure. */
  end(status: number | undefined, error?: unknown): void
}

/** Starts observing a call: `name` is the operation (an HTTP method, a Redis command), `target` its URL or server. */
export type CallObserver = (kind: CallKind, name: string, target: string) => ObservedCall | undefined

/** A call starts, observed by the request's observer when it has one. */
export function callStarted(kind: CallKind, name: string, target: string, observer: CallObserver | undefined): ObservedCall | undefined {
  return observer === undefined ? undefined : observer(kind, name, target)
}

/** Adds a call's headers to a header record, replacing any traceparent or tracestate it had. */
export function withCallHeaders<T extends Record<string, unknown>>(headers: T, call: ObservedCall | undefined): T {
  const add = call?.headers
  if (add === undefined) return headers
  const h = headers as Record<string, unknown>
  // No delete unless needed: it would turn the record into a slow dictionary.
  if (add.tracestate === undefined && h.tracestate !== undefined) delete h.tracestate
  for (const name in add) h[name] = add[name]
  return headers
}
