// Runs the CLI from source, as bin/gateway.js runs it from dist/.
import { main } from '../../src/cli.js'

process.exit(await main(process.argv.slice(2)))
