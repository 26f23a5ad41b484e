#!/usr/bin/env node
// The compiled CLI lives in dist/ (built by `npm install` through the `prepare` script).
import { main } from '../dist/cli.js'

// Exit explicitly: keep-alive sockets of key and introspection fetches must not hold the process.
process.exit(await main(process.argv.slice(2)))
