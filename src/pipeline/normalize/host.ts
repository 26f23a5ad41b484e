/** The host routes match on: lower-cased, without the root dot ("API.example.com." is "api.example.com"); "" for none. */
export function canonicalHost(hostname: string | undefined): string {
  if (!hostname) return ''
  const lower = hostname.toLowerCase()
  return lower.endsWith('.') ? lower.slice(0, -1) : lower
}
