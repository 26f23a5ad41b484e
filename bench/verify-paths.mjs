// Signature verification, per token, on one core: node:crypto's verify (on
// the calling thread) against WebCrypto's subtle.verify (a thread-pool job),
// 50 in flight, CPU time of the whole process (thread pool included).
// Prints {alg: {node, webcrypto}} in µs. The gateway uses node:crypto.
//   node bench/verify-paths.mjs [N]
import { generateKeyPairSync, sign, verify } from 'node:crypto'

const N = Number(process.argv[2] ?? 5000)
const data = Buffer.from('x'.repeat(400)) // a JWT's signing input
const cpu = () => {
  const u = process.cpuUsage()
  return u.user + u.system
}
const out = {}
for (const [alg, type, options, hash, subtle, subtleSign] of [
  ['RS256', 'rsa', { modulusLength: 2048 }, 'sha256', { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, { name: 'RSASSA-PKCS1-v1_5' }],
  ['ES256', 'ec', { namedCurve: 'P-256' }, 'sha256', { name: 'ECDSA', namedCurve: 'P-256' }, { name: 'ECDSA', hash: 'SHA-256' }],
  ['EdDSA', 'ed25519', {}, null, { name: 'Ed25519' }, { name: 'Ed25519' }],
]) {
  const { privateKey, publicKey } = generateKeyPairSync(type, options)
  const ecdsa = type === 'ec'
  const signature = sign(hash, data, ecdsa ? { key: privateKey, dsaEncoding: 'ieee-p1363' } : privateKey)
  const cryptoKey = await crypto.subtle.importKey('jwk', publicKey.export({ format: 'jwk' }), subtle, false, ['verify'])
  const key = ecdsa ? { key: publicKey, dsaEncoding: 'ieee-p1363' } : publicKey
  for (let i = 0; i < 200; i++) verify(hash, data, key, signature) // warm
  let start = cpu()
  for (let i = 0; i < N; i++) if (!verify(hash, data, key, signature)) throw new Error('does not verify')
  const node = (cpu() - start) / N
  start = cpu()
  for (let done = 0; done < N; ) {
    const batch = Math.min(50, N - done)
    const results = await Promise.all(Array.from({ length: batch }, () => crypto.subtle.verify(subtleSign, cryptoKey, signature, data)))
    if (!results.every(Boolean)) throw new Error('does not verify')
    done += batch
  }
  out[alg] = { node: Math.round(node * 10) / 10, webcrypto: Math.round(((cpu() - start) / N) * 10) / 10 }
}
process.stdout.write(JSON.stringify(out))
