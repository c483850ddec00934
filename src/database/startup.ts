import type { Logger } from 'pino'
import type { Settings } from '../config/settings.js'
import { DataDirInUse } from './data-dir-lock.js'
import { openDatabase, type Database } from './database.js'
import { migrate } from './migrations.js'

/** The database could not be opened or migrated at start; the message is the one line to log. */
export class StartupFailure extends Error {
  override name = 'StartupFailure'
  constructor(
    message: string,
    readonly details: Record<string, unknown>,
  ) {
    super(message)
  }
}

/** Where the database is, for people: host, port and database of the URL, never its password. */
export function describeDatabase(settings: Settings['database']): string {
  if (!settings.url) return `embedded PGlite in ${settings.dataDir}`
  const url = new URL(settings.url)
  const user = url.username ? ` as ${decodeURIComponent(url.username)}` : ''
  return `PostgreSQL at ${url.hostname}:${url.port || '5432'}${url.pathname || '/'}${user}`
}

/** What went wrong, in one line: node's connection errors may carry only a code (an AggregateError). */
function reason(error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  const { code, errors } = error as { code?: string; errors?: unknown[] }
  const first = errors?.[0] instanceof Error ? errors[0].message : undefined
  return (error.message || first || code || error.name).split('\n')[0]!
}

/** Opens the database and, when `migrateIt`, applies pending migrations; failures become a StartupFailure. */
export async function openMigratedDatabase(
  settings: Settings['database'],
  logger: Logger,
  { migrateIt }: { migrateIt: boolean },
): Promise<Database> {
  let database: Database | undefined
  try {
    database = await openDatabase(settings, logger)
    if (migrateIt) await migrate(database.pool, logger, settings)
    return database
  } catch (error) {
    await database?.close().catch(() => {})
    if (error instanceof DataDirInUse) {
      throw new StartupFailure(error.message, { dataDir: error.dataDir, ownerPid: error.owner.pid })
    }
    const where = describeDatabase(settings)
    const why = reason(error)
    const code = (error as { code?: unknown }).code
    throw new StartupFailure(`cannot start: ${where}: ${why}`, { database: where, reason: why, code })
  }
}

/** Logs a StartupFailure as one line (no stack trace) and exits 1; anything else is a bug and is thrown. */
export function exitOnStartupFailure(error: unknown, logger: Logger): never {
  if (!(error instanceof StartupFailure)) throw error
  logger.fatal(error.details, error.message)
  process.exit(1)
}
