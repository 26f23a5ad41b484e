// A WebSocket echo service (the ws package): the upstream of the WebSocket rows.
import { WebSocketServer } from 'ws'
const server = new WebSocketServer({ port: Number(process.argv[2]), host: '127.0.0.1' })
server.on('connection', (socket) => socket.on('message', (data, binary) => socket.send(data, { binary })))
