import { AsyncLocalStorage } from 'node:async_hooks'

/**
 * Outbound calls, observed. Stages that call out (the JWKS and introspection
 * clients, Redis, the forwarder) tell this module when a call starts and
 * ends, and add the headers it gives them (W3C traceparent) to the call;
 * they never import a tracer. The observer is the one of the request being
 * handled (set around its handling by the tracer); with none (tracing off,
 * or a call no request made) every function here returns at once and
 * allocates nothing.
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

const scope = new AsyncLocalStorage<CallObserver>()

/** Runs `fn` (and everything it starts) with the calls it makes observed by `observer`. */
export function observingCalls<T>(observer: CallObserver, fn: () => T): T {
  return scope.run(observer, fn)
}

export function callStarted(kind: CallKind, name: string, target: string): ObservedCall | undefined {
  const observer = scope.getStore()
  return observer === undefined ? undefined : observer(kind, name, target)
}

/** Adds a call's headers to a header record, replacing any traceparent or tracestate it had. */
export function withCallHeaders<T extends Record<string, unknown>>(headers: T, call: ObservedCall | undefined): T {
  if (call?.headers === undefined) return headers
  delete headers.traceparent
  delete headers.tracestate
  return Object.assign(headers, call.headers)
}
