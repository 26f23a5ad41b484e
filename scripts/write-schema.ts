// Writes schema/gateway.schema.json from src/config/schema.ts (the validator's
// own source). Never edit the JSON by hand; test/unit/schema-file.test.ts fails when it is stale.
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { jsonSchema } from '../src/config/schema.js'

export const SCHEMA_FILE = fileURLToPath(new URL('../schema/gateway.schema.json', import.meta.url))

export function renderSchema(): string {
  return JSON.stringify(jsonSchema(), null, 2) + '\n'
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(SCHEMA_FILE, renderSchema())
  console.log(`wrote ${SCHEMA_FILE}`)
}
