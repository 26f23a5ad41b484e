/**
 * Claim paths: where in a token's claims a value sits, as dotted names
 * (`realm_access.roles`, `resource_access.orders-api.roles`). A name holding
 * dots is written in double quotes: `"https://corp.example/roles"`.
 */
export type ClaimPath = readonly string[]

const SEGMENT = /"([^"]+)"|([^."]+)/y

/** Parses a claim path; undefined when it is malformed (empty segments, an unclosed quote). */
export function parseClaimPath(text: string): ClaimPath | undefined {
  const out: string[] = []
  let i = 0
  while (i < text.length) {
    SEGMENT.lastIndex = i
    const m = SEGMENT.exec(text)
    if (m === null) return undefined
    out.push(m[1] ?? m[2]!)
    i = SEGMENT.lastIndex
    if (i < text.length) {
      if (text[i] !== '.' || i === text.length - 1) return undefined
      i++
    }
  }
  return out.length > 0 ? out : undefined
}

/** The value at a path, or undefined; only own properties of plain objects are followed. */
export function readClaim(claims: Readonly<Record<string, unknown>>, path: ClaimPath): unknown {
  let v: unknown = claims
  for (const name of path) {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || !Object.hasOwn(v, name)) return undefined
    v = (v as Record<string, unknown>)[name]
  }
  return v
}

/** A claim by name: an own property only (a claim named `toString` or `constructor` that a token lacks is absent). */
export function ownClaim(claims: Readonly<Record<string, unknown>>, name: string): unknown {
  return Object.hasOwn(claims, name) ? claims[name] : undefined
}
