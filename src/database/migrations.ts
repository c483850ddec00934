import { readdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { runner } from 'node-pg-migrate'
import type pg from 'pg'
import type { Logger } from 'pino'

export const migrationsDir = fileURLToPath(new URL('../../migrations/', import.meta.url))
export const migrationsTable = 'pgmigrations'

export async function latestMigration(): Promise<string> {
  const files = (await readdir(migrationsDir)).filter((file) => file.endsWith('.sql')).sort()
  const latest = files.at(-1)
  if (!latest) throw new Error(`no migrations in ${migrationsDir}`)
  return latest.replace(/\.sql$/, '')
}

/** Applies pending migrations; concurrent callers wait on node-pg-migrate's advisory lock. */
export async function migrate(pool: pg.Pool, logger: Logger): Promise<void> {
  const client = await pool.connect()
  try {
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
  } finally {
    client.release()
  }
}
