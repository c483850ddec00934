import assert from 'node:assert/strict'
import { after, before, it } from 'node:test'
import { startApp, type RunningApp } from './support/app.js'
import { createTestDatabase, withClient, type TestDatabase } from './support/postgres.js'

let database: TestDatabase
let api: RunningApp

before(async () => {
  database = await createTestDatabase()
  api = await startApp({ DATABASE_URL: database.url, CACHE_ENABLED: 'false' })
  await withClient(database.url, async (client) => {
    await client.query(
      `INSERT INTO users (name, email) SELECT 'User ' || g, 'user-' || g || '@search.example.com' FROM generate_series(1, 20000) g`,
    )
    await client.query('ANALYZE users')
  })
})

after(async () => {
  await api?.close()
  await database?.drop()
})

const trigramScans = (url: string) =>
  withClient(url, async (client) => {
    const { rows } = await client.query<{ scans: string }>(
      `SELECT coalesce(sum(idx_scan), 0) AS scans FROM pg_stat_user_indexes WHERE indexrelname = 'users_name_trgm'`,
    )
    return Number(rows[0]!.scans)
  })

it('a search runs on the trigram indexes every time, not on a generic plan that filters every row', async () => {
  const searches = 12
  for (let i = 0; i < searches; i++) {
    const answer = await fetch(`${api.url}/users?q=1234`)
    assert.equal(answer.status, 200)
    assert.equal(((await answer.json()) as unknown[]).length, 12)
  }
  // A backend's statistics reach pg_stat_user_indexes when it goes idle for a while or exits.
  await api.close()
  let scans = 0
  for (const deadline = Date.now() + 20_000; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 200))) {
    scans = await trigramScans(database.url)
    if (scans >= searches) break
  }
  // A prepared statement would have planned for the pattern five times, then walked the primary key.
  assert.ok(scans >= searches, `the name's trigram index served ${scans} of ${searches} searches`)
})

it('the trigram indexes keep a small pending list, which every search reads', async () => {
  const options = await withClient(database.url, async (client) => {
    const { rows } = await client.query<{ name: string; options: string[] | null }>(
      `SELECT relname AS name, reloptions AS options FROM pg_class WHERE relname IN ('users_name_trgm', 'users_email_trgm') ORDER BY relname`,
    )
    return rows
  })
  assert.deepEqual(options, [
    { name: 'users_email_trgm', options: ['gin_pending_list_limit=256'] },
    { name: 'users_name_trgm', options: ['gin_pending_list_limit=256'] },
  ])
})
