import { mkdir } from 'node:fs/promises'
import { resolve } from 'node:path'
import pg from 'pg'
import type { Logger } from 'pino'
import type { Settings } from '../config/settings.js'
import { lockDataDir } from './data-dir-lock.js'
import { statementRunner, type RunStatement } from './statements.js'

export interface Database {
  readonly kind: 'postgres' | 'pglite'
  readonly pool: pg.Pool
  /** Named prepared statements live in one backend session, which PGlite shares between connections. */
  readonly preparesStatements: boolean
  /** Runs one statement, retrying lost deadlocks; raises the domain errors of ./errors.ts. */
  readonly query: RunStatement
  close(): Promise<void>
}

// The `pg` driver would turn int8 into strings; every bigint this service reads is a count.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number.parseInt(value, 10))

function poolOptions(settings: Settings['database']): pg.PoolConfig {
  return {
    max: settings.poolMax,
    connectionTimeoutMillis: settings.connectTimeoutMs,
    statement_timeout: settings.statementTimeoutMs,
    query_timeout: settings.statementTimeoutMs + 1000,
    idle_in_transaction_session_timeout: settings.statementTimeoutMs,
    keepAlive: true,
    application_name: 'fullstack-app',
  }
}

function watchPool(pool: pg.Pool, logger: Logger): void {
  pool.on('error', (error) => logger.warn({ err: error }, 'idle database connection lost'))
}

async function openPostgres(url: string, settings: Settings['database'], logger: Logger): Promise<Database> {
  const pool = new pg.Pool({ connectionString: url, ...poolOptions(settings) })
  watchPool(pool, logger)
  return {
    kind: 'postgres',
    pool,
    preparesStatements: settings.preparedStatements !== false,
    query: statementRunner(pool, logger),
    close: () => pool.end(),
  }
}

async function openPglite(settings: Settings['database'], logger: Logger): Promise<Database> {
  const dataDir = resolve(settings.dataDir)
  await mkdir(dataDir, { recursive: true })
  // Loaded here only: a server on PostgreSQL does not carry the embedded engine's code in its heap.
  const [{ PGlite }, { pg_trgm }, { PGLiteSocketServer }, { pgliteSeedOptions }] = await Promise.all([
    import('@electric-sql/pglite'),
    import('@electric-sql/pglite/contrib/pg_trgm'),
    import('@electric-sql/pglite-socket'),
    import('./pglite-seed.js'),
  ])
  // Two processes writing one PGlite directory lose each other's writes: the second one refuses.
  const unlock = await lockDataDir(dataDir, logger)
  const engine = await PGlite.create(dataDir, {
    ...(await pgliteSeedOptions(dataDir)),
    // pg_trgm backs the name and email search (migrations/002_users-search.sql).
    extensions: { pg_trgm },
  }).catch(async (error: unknown) => {
    await unlock()
    throw error
  })
  // PGlite is one backend: a single client keeps statements in order; spare server slots let the
  // pool replace a client it closed (after a network error or a client-side timeout) at once.
  const server = new PGLiteSocketServer({ db: engine, host: '127.0.0.1', port: 0, maxConnections: 4 })
  await server.start()
  const [host, port] = server.getServerConn().split(':')
  const pool = new pg.Pool({
    host,
    port: Number(port),
    user: 'postgres',
    database: 'postgres',
    ...poolOptions(settings),
    max: 1,
  })
  watchPool(pool, logger)
  logger.info({ dataDir }, 'using embedded PGlite database (development and demos only)')
  return {
    kind: 'pglite',
    pool,
    preparesStatements: false,
    query: statementRunner(pool, logger),
    async close() {
      await pool.end()
      await server.stop()
      await engine.close()
      await unlock()
    },
  }
}

export function openDatabase(settings: Settings['database'], logger: Logger): Promise<Database> {
  return settings.url ? openPostgres(settings.url, settings, logger) : openPglite(settings, logger)
}
