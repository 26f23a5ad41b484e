import { createHash, randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { exportJWK, generateKeyPair } from 'jose'
import Provider from 'oidc-provider'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type TestGateway } from '../helpers/gateway.js'
import { freePort } from '../helpers/redis.js'
import { bearer, send } from '../helpers/servers.js'

// The whole RFC 9470 loop against a real OpenID provider (oidc-provider):
// a token from a password login is refused at /admin with the challenge,
// the client re-authorizes asking for the acr_values and max_age the
// challenge names, the user steps up, and the new token passes.

const RESOURCE = 'https://api.example'
const CLIENT = { id: 'dashboard', secret: 'dashboard-secret-0123456789' }
let issuer: string
let op: Server
let gw: TestGateway
const acrsSeen: string[] = []

beforeAll(async () => {
  const port = await freePort()
  issuer = `http://127.0.0.1:${port}`
  const { privateKey } = await generateKeyPair('ES256', { extractable: true })
  const provider = new Provider(issuer, {
    clients: [{ client_id: CLIENT.id, client_secret: CLIENT.secret, redirect_uris: [`${issuer}/cb`], grant_types: ['authorization_code'], response_types: ['code'], id_token_signed_response_alg: 'ES256' }],
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: 'op-es256', alg: 'ES256', use: 'sig' }] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    acrValues: ['urn:example:pwd', 'urn:example:mfa'],
    features: {
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({ scope: 'admin', audience: 'api', accessTokenFormat: 'jwt', accessTokenTTL: 600, jwt: { sign: { alg: 'ES256' } } }),
      },
    },
    // RFC 9068 §2.2.1: how and when the user authenticated travels in the access token.
    extraTokenClaims: (ctx) => {
      const code = ctx.oidc.entities.AuthorizationCode
      return code ? { acr: code.acr, auth_time: code.authTime } : undefined
    },
    findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  })
  // The login page: a password login, or MFA when the client asked for it.
  const interaction = async (req: IncomingMessage, res: ServerResponse) => {
    const details = await provider.interactionDetails(req, res)
    if (details.prompt.name === 'login') {
      const asked = String(details.params.acr_values ?? '').split(' ')
      const acr = asked.includes('urn:example:mfa') ? 'urn:example:mfa' : 'urn:example:pwd'
      acrsSeen.push(acr)
      return provider.interactionFinished(req, res, { login: { accountId: 'alice', acr } }, { mergeWithLastSubmission: false })
    }
    const grant = details.grantId ? (await provider.Grant.find(details.grantId))! : new provider.Grant({ accountId: details.session!.accountId, clientId: CLIENT.id })
    grant.addOIDCScope('openid')
    grant.addResourceScope(RESOURCE, 'admin')
    return provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true })
  }
  const callback = provider.callback()
  op = createServer((req, res) => {
    if (req.url?.startsWith('/interaction/')) void interaction(req, res).catch((err: Error) => res.writeHead(500).end(err.message))
    else callback(req, res)
  })
  await new Promise<void>((resolve) => op.listen(port, '127.0.0.1', resolve))
  gw = await startGateway(`
upstreams: { api: { echo: true } }
issuers:
  - id: op
    issuer: ${issuer}
    jwks_uri: ${issuer}/jwks
    audiences: [api]
    algorithms: [ES256]
    require_typ: at+jwt
routes:
  - id: admin
    match: { path: /admin/* }
    upstream: api
    auth:
      issuers: [op]
      scopes: { all_of: [admin] }
      step_up: { acr_values: ["urn:example:mfa"], max_age: 10m }
`)
})
afterAll(async () => {
  await gw?.close()
  await new Promise((r) => op?.close(r))
})

/** A browser's cookie jar, for one origin. */
class Jar {
  private readonly cookies = new Map<string, string>()
  take(res: Response) {
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';')
      const i = pair!.indexOf('=')
      this.cookies.set(pair!.slice(0, i), pair!.slice(i + 1))
    }
  }
  header() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
  }
}

/** The authorization code flow as a browser and the client run it; extra parameters go to the authorization request. */
async function authorize(jar: Jar, extra: Record<string, string> = {}): Promise<string> {
  const verifier = randomBytes(32).toString('base64url')
  const params = new URLSearchParams({
    client_id: CLIENT.id,
    response_type: 'code',
    scope: 'openid admin',
    redirect_uri: `${issuer}/cb`,
    resource: RESOURCE,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    state: randomBytes(8).toString('hex'),
    ...extra,
  })
  let url = `${issuer}/auth?${params}`
  for (let hop = 0; hop < 10; hop++) {
    const res = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header() } })
    jar.take(res)
    const location = res.headers.get('location')
    if (location === null) throw new Error(`the flow stopped at ${url}: ${res.status} ${await res.text()}`)
    const next = new URL(location, url)
    if (next.pathname === '/cb') {
      const code = next.searchParams.get('code')
      if (!code) throw new Error(`no code: ${next.search}`)
      const token = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${CLIENT.id}:${CLIENT.secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: `${issuer}/cb`, code_verifier: verifier, resource: RESOURCE }),
      })
      const body = (await token.json()) as { access_token?: string }
      if (!body.access_token) throw new Error(`no access token: ${JSON.stringify(body)}`)
      return body.access_token
    }
    url = next.href
  }
  throw new Error('too many redirects')
}

/** The parameters of a Bearer challenge. */
function challengeParams(header: string): Record<string, string> {
  return Object.fromEntries([...header.matchAll(/([a-z_]+)=(?:"([^"]*)"|([^,\s]+))/g)].map((m) => [m[1]!, m[2] ?? m[3]!]))
}

describe('step-up with a real OpenID provider', () => {
  it('refuses the password login with the challenge, and passes once the user steps up as it asks', async () => {
    const jar = new Jar()
    const first = await authorize(jar)
    const refused = await send(gw.url, { path: '/admin/settings', headers: [bearer(first)] })
    expect(refused.status).toBe(401)
    const challenge = challengeParams(refused.headers['www-authenticate'] as string)
    expect(challenge).toMatchObject({ error: 'insufficient_user_authentication', acr_values: 'urn:example:mfa', max_age: '600' })

    // The client does what the challenge says (RFC 9470 §4): a new authorization request with those values.
    const second = await authorize(jar, { acr_values: challenge.acr_values!, max_age: challenge.max_age!, prompt: 'login' })
    const allowed = await send(gw.url, { path: '/admin/settings', headers: [bearer(second)] })
    expect(allowed.status).toBe(200)
    expect(allowed.json<{ headers: Record<string, string> }>().headers['x-subject']).toBe('alice')
    expect(acrsSeen).toEqual(['urn:example:pwd', 'urn:example:mfa'])
  })
})
