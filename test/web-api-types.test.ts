import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { test } from 'node:test'
import { apiTypes, apiTypesFile } from '../scripts/openapi-types.js'

test('the web client’s committed API types match the server’s /openapi.json', async () => {
  const committed = await readFile(apiTypesFile, 'utf8')
  assert.ok(committed === (await apiTypes()), 'web/src/api/schema.d.ts is out of date: run `npm run generate:api`')
})
