import { writeFile } from 'node:fs/promises'
import { apiTypes, apiTypesFile } from './openapi-types.js'

await writeFile(apiTypesFile, await apiTypes())
console.log(`wrote ${apiTypesFile.pathname}`)
