import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, it } from 'node:test'
import { PGlite } from '@electric-sql/pglite'
import { pgliteSeedOptions, writePgliteSeed } from '../src/database/pglite-seed.js'

let work: string
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'pglite-seed-'))
})
after(() => rm(work, { recursive: true, force: true }))

it('fills a new data directory from the seed the build saves, then resumes it without the seed', async () => {
  const seed = join(work, 'seed.tar.gz')
  await writePgliteSeed(seed)
  const dataDir = join(work, 'data')

  const fresh = await pgliteSeedOptions(dataDir, seed)
  assert.ok(fresh.loadDataDir, 'an empty directory is loaded from the seed')
  const first = await PGlite.create(dataDir, fresh)
  await first.exec("CREATE TABLE kept (note text); INSERT INTO kept VALUES ('written after the seed')")
  await first.close()
  assert.ok(existsSync(join(dataDir, 'PG_VERSION')), 'the seed became a database on disk')

  // PGlite refuses to load a tarball over an existing database: the seed must not be offered again.
  const existing = await pgliteSeedOptions(dataDir, seed)
  assert.deepEqual(existing, {})
  const second = await PGlite.create(dataDir, existing)
  assert.deepEqual((await second.query('SELECT note FROM kept')).rows, [{ note: 'written after the seed' }])
  await second.close()

  assert.deepEqual(await pgliteSeedOptions(join(work, 'other'), join(work, 'missing.tar.gz')), {}, 'no seed: initdb as before')
})
