// Baseline: plain http-proxy, no auth.
import { Agent, createServer } from 'node:http'
import httpProxy from 'http-proxy'

const [port, upstream] = [Number(process.argv[2]), process.argv[3]]
const proxy = httpProxy.createProxyServer({ target: upstream, agent: new Agent({ keepAlive: true, maxSockets: 256 }) })
proxy.on('error', (_err, _req, res) => {
  res.writeHead(502)
  res.end()
})
const server = createServer((req, res) => proxy.web(req, res))
server.keepAliveTimeout = 60_000
server.listen(port, '127.0.0.1', () => console.log(`listening ${server.address().port}`))
