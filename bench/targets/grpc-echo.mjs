// A gRPC service (@grpc/grpc-js, h2c): /bench.Echo/Say answers its request. The upstream of the gRPC rows.
import * as grpc from '@grpc/grpc-js'
const id = (b) => b
const server = new grpc.Server()
server.addService({ say: { path: '/bench.Echo/Say', requestStream: false, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id } }, { say: (call, cb) => cb(null, call.request) })
server.bindAsync(`127.0.0.1:${process.argv[2]}`, grpc.ServerCredentials.createInsecure(), () => undefined)
