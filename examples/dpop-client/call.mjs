// A DPoP client (RFC 9449) in a few lines: get a token bound to a key of
// its own, call with a fresh proof each time, follow the server's nonce.
//   node examples/dpop-client/call.mjs [base URL] [path] [client:secret]
import { createHash, randomUUID } from 'node:crypto'
import { SignJWT, exportJWK, generateKeyPair } from 'jose'

const [base = 'http://127.0.0.1:8080', path = '/orders/42', client = 'demo-client:demo-secret-change-me'] = process.argv.slice(2)
const { privateKey, publicKey } = await generateKeyPair('ES256')
const jwk = await exportJWK(publicKey)
let nonce
const proof = (htm, htu, token) =>
  new SignJWT({ htm, htu, jti: randomUUID(), ...(nonce && { nonce }), ...(token && { ath: createHash('sha256').update(token).digest('base64url') }) })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
    .setIssuedAt()
    .sign(privateKey)

// 1. The token request carries a proof: the token is bound to this key (token_type DPoP).
const tokenUrl = `${base}/oauth2/token`
const basic = 'Basic ' + Buffer.from(client).toString('base64')
const issued = await fetch(tokenUrl, { method: 'POST', headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded', dpop: await proof('POST', tokenUrl) }, body: 'grant_type=client_credentials' })
const { access_token: token, token_type: type } = await issued.json()
console.log(`token_type: ${type}`)

// 2. Each call: Authorization: DPoP <token> and a fresh proof of its method and URL.
//    A 401 use_dpop_nonce hands a nonce (DPoP-Nonce): the next proof carries it.
const url = base + path
const call = async () => fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: await proof('GET', url, token) } })
let res = await call()
if (res.status === 401 && res.headers.get('dpop-nonce')) {
  nonce = res.headers.get('dpop-nonce')
  console.log(`nonce asked for: ${res.headers.get('www-authenticate')}`)
  res = await call()
}
console.log(`DPoP: ${res.status} ${await res.text()}`)

// 3. The same token without the key (stolen, sent as Bearer): refused.
const stolen = await fetch(url, { headers: { authorization: `Bearer ${token}` } })
console.log(`as Bearer: ${stolen.status} ${stolen.headers.get('www-authenticate')}`)
