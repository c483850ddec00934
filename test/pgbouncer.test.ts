import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import pg from 'pg'
import { loadSettings, SettingsError } from '../src/config/settings.js'
import { migrationNames } from '../src/database/migrations.js'
import { apiSuite } from './support/api-suite.js'
import { startPgBouncer, type PgBouncer } from './support/pgbouncer.js'
import { createTestDatabase } from './support/postgres.js'
import { startServerProcess } from './support/process.js'

// The production overlay reaches PostgreSQL through CloudNativePG's Pooler: PgBouncer in transaction
// mode. Debian's PgBouncer 1.18 cannot keep named prepared statements there, so the app runs with
// DATABASE_PREPARED_STATEMENTS=false, and migrates over a direct connection (DATABASE_MIGRATION_URL).
let bouncer: PgBouncer
before(async () => {
  bouncer = await startPgBouncer()
})
after(() => bouncer?.stop())

const throughPgBouncer = async (preparedStatements: boolean) => {
  const database = await createTestDatabase()
  const name = new URL(database.url).pathname.slice(1)
  return {
    env: {
      DATABASE_URL: bouncer.url(name),
      DATABASE_MIGRATION_URL: database.url,
      DATABASE_PREPARED_STATEMENTS: String(preparedStatements),
    },
    directUrl: database.url,
    dispose: database.drop,
  }
}

apiSuite('postgres', { name: 'PostgreSQL through PgBouncer in transaction mode', store: () => throughPgBouncer(false) })

describe('through PgBouncer in transaction mode', () => {
  it('reads DATABASE_PREPARED_STATEMENTS and DATABASE_MIGRATION_URL, never echoing the URL', () => {
    const pooled = 'postgres://app@pooler:5432/app'
    const settings = loadSettings({ DATABASE_URL: pooled, DATABASE_MIGRATION_URL: 'postgres://app@primary:5432/app', DATABASE_PREPARED_STATEMENTS: 'false' })
    assert.equal(settings.database.migrationUrl, 'postgres://app@primary:5432/app')
    assert.equal(settings.database.preparedStatements, false)
    assert.equal(loadSettings({ DATABASE_URL: pooled }).database.preparedStatements, true)
    const refused = (env: NodeJS.ProcessEnv, variable: string) =>
      assert.throws(
        () => loadSettings(env),
        (error: Error) => error instanceof SettingsError && error.message.includes(variable) && !error.message.includes('hunter2'),
      )
    refused({ DATABASE_URL: pooled, DATABASE_MIGRATION_URL: 'mysql://app:hunter2@primary/app' }, 'DATABASE_MIGRATION_URL')
    refused({ DATABASE_MIGRATION_URL: 'postgres://app:hunter2@primary/app' }, 'DATABASE_MIGRATION_URL')
    refused({ DATABASE_URL: pooled, DATABASE_PREPARED_STATEMENTS: 'sometimes' }, 'DATABASE_PREPARED_STATEMENTS')
  })

  it('starts three instances at once: migrated once over the direct URL, no advisory lock left behind', async () => {
    const store = await throughPgBouncer(false)
    const servers = await Promise.all(
      [1, 2, 3].map(() =>
        startServerProcess({ ...store.env, LOG_LEVEL: 'warn', CACHE_ENABLED: 'false', RATE_LIMIT_MAX: '0', API_TOKEN: 'pgbouncer-test-token-0123456789' }),
      ),
    )
    const direct = new pg.Client({ connectionString: store.directUrl })
    try {
      for (const server of servers) assert.equal((await fetch(`${server.url}/readyz`)).status, 200)
      await direct.connect()
      const applied = await direct.query('SELECT name FROM pgmigrations')
      assert.deepEqual(applied.rows.map((row) => row.name), await migrationNames())
      const locks = await direct.query(`SELECT count(*) AS held FROM pg_locks
         WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
      assert.equal(locks.rows[0].held, 0)
    } finally {
      await direct.end()
      await Promise.all(servers.map((server) => server.stop()))
      await store.dispose()
    }
  })

  it('fails with named prepared statements on PgBouncer 1.18, which is why the setting exists', async () => {
    const store = await throughPgBouncer(true)
    const token = 'pgbouncer-test-token-0123456789'
    const server = await startServerProcess({ ...store.env, LOG_LEVEL: 'silent', CACHE_ENABLED: 'false', RATE_LIMIT_MAX: '0', API_TOKEN: token })
    try {
      const created = await fetch(`${server.url}/users`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ name: 'Prepared', email: 'prepared@example.com' }),
      })
      assert.equal(created.status, 201)
      const { id } = (await created.json()) as { id: number }
      const statuses = await Promise.all(Array.from({ length: 40 }, () => fetch(`${server.url}/users/${id}`).then((answer) => answer.status)))
      assert.ok(statuses.some((status) => status >= 500), `statuses: ${[...new Set(statuses)].join(', ')}`)
    } finally {
      await server.stop()
      await store.dispose()
    }
  })
})
