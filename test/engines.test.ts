import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { it } from 'node:test'
import semver from 'semver'
import { projectRoot } from './support/process.js'

const readJson = (file: string) => JSON.parse(readFileSync(join(projectRoot, file), 'utf8'))

it('declares a Node range that every locked package supports (npm ci gives no EBADENGINE)', () => {
  const declared: string = readJson('package.json').engines.node
  const lock: { packages: Record<string, { engines?: { node?: string } }> } = readJson('package-lock.json')
  const narrower = Object.entries(lock.packages)
    .filter(([path, entry]) => path !== '' && entry.engines?.node && !semver.subset(declared, entry.engines.node))
    .map(([path, entry]) => `${path} wants node ${entry.engines!.node}`)
  assert.deepEqual(narrower, [], `package.json says node ${declared}`)
  assert.ok(semver.satisfies(process.version, declared), `this Node (${process.version}) is outside ${declared}`)
})
