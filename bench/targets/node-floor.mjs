// Baseline: the least a Node proxy can do. node:http in, undici's dispatch
// out (the transports the gateway uses), hop-by-hop headers dropped and
// nothing else: no routing, checks, added headers, logs or metrics. The
// distance from here to the gateway's public route is what the gateway's
// own work costs.
import { createServer } from 'node:http'
import { Agent } from 'undici'

const [port, upstream] = [Number(process.argv[2]), process.argv[3]]
const agent = new Agent({ connections: 256, pipelining: 1 })
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'proxy-connection', 'host'])

const server = createServer((req, res) => {
  const headers = {}
  for (const k in req.headers) if (!HOP.has(k)) headers[k] = req.headers[k]
  agent.dispatch(
    { origin: upstream, path: req.url, method: req.method, headers, body: req.method === 'GET' || req.method === 'HEAD' ? null : req },
    {
      onRequestStart() {},
      onResponseStart(_c, status, h) {
        const out = {}
        for (const k in h) if (!HOP.has(k)) out[k] = h[k]
        res.writeHead(status, out)
      },
      onResponseData(c, chunk) {
        if (!res.write(chunk)) {
          c.pause()
          res.once('drain', () => c.resume())
        }
      },
      onResponseEnd() {
        res.end()
      },
      onResponseError() {
        if (!res.headersSent) res.writeHead(502)
        res.end()
      },
    },
  )
})
server.keepAliveTimeout = 60_000
server.listen(port, '127.0.0.1', () => console.log(`listening ${server.address().port}`))
