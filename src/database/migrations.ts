import { readdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import type { Logger } from 'pino'
import type { Settings } from '../config/settings.js'

export const migrationsDir = fileURLToPath(new URL('../../migrations/', import.meta.url))
export const migrationsTable = 'pgmigrations'

/** The names of the migrations in migrations/, in the order they apply. */
export async function migrationNames(): Promise<string[]> {
  const files = (await readdir(migrationsDir)).filter((file) => file.endsWith('.sql')).sort()
  return files.map((file) => file.replace(/\.sql$/, ''))
}

export async function latestMigration(): Promise<string> {
  const latest = (await migrationNames()).at(-1)
  if (!latest) throw new Error(`no migrations in ${migrationsDir}`)
  return latest
}

/**
 * Applies pending migrations; concurrent callers wait on node-pg-migrate's advisory lock. The lock
 * belongs to one PostgreSQL session, which a transaction-mode pooler does not give: with
 * DATABASE_MIGRATION_URL set, migrations connect there (straight to the primary) instead.
 */
export async function migrate(pool: pg.Pool, logger: Logger, settings?: Settings['database']): Promise<void> {
  if (settings?.migrationUrl) {
    const client = new pg.Client({
      connectionString: settings.migrationUrl,
      connectionTimeoutMillis: settings.connectTimeoutMs,
      application_name: 'fullstack-app-migrations',
    })
    client.on('error', (error) => logger.warn({ err: error }, 'migration connection lost'))
    await client.connect()
    try {
      await applyMigrations(client, logger)
    } finally {
      await client.end()
    }
    return
  }
  const client = await pool.connect()
  try {
    await applyMigrations(client, logger)
  } finally {
    client.release()
  }
}

async function applyMigrations(client: pg.ClientBase, logger: Logger): Promise<void> {
  // Loaded here only: cluster workers, which never migrate, do not carry it in their heap.
  const { runner } = await import('node-pg-migrate')
  const applied = await runner({
    dbClient: client,
    dir: migrationsDir,
    migrationsTable,
    direction: 'up',
    advisoryLockMode: 'wait',
    checkOrder: true,
    log: () => {},
    logger: { debug: () => {}, info: () => {}, warn: (msg) => logger.warn(msg), error: (msg) => logger.error(msg) },
  })
  logger.info({ applied: applied.map((migration) => migration.name) }, 'database migrated')
}
