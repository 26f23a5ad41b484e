import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { renderSchema, SCHEMA_FILE } from '../../scripts/write-schema.js'

describe('schema/gateway.schema.json', () => {
  it('is generated from the validator source (run `npm run schema` after changing src/config/schema.ts)', () => {
    expect(readFileSync(SCHEMA_FILE, 'utf8')).toBe(renderSchema())
  })

  it('is a draft-07 schema that rejects unknown keys', () => {
    const schema = JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as Record<string, unknown>
    expect(schema.$schema).toBe('http://json-schema.org/draft-07/schema#')
    expect(schema.additionalProperties).toBe(false)
  })
})
