import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { DestinationStream } from 'pino'
import { buildApp } from '../../src/app.js'
import { openCache } from '../../src/cache/open-cache.js'
import type { ResponseCache } from '../../src/cache/response-cache.js'
import { loadSettings } from '../../src/config/settings.js'
import { openDatabase, type Database } from '../../src/database/database.js'
import { migrate } from '../../src/database/migrations.js'
import { createLogger } from '../../src/telemetry/logger.js'
import { createTestDatabase } from './postgres.js'

export type Backend = 'postgres' | 'pglite'

export interface RunningApp {
  app: FastifyInstance
  cache: ResponseCache
  /** The app's own pool, for checking what it stored. */
  database: Database
  url: string
  close(): Promise<void>
}

export interface StartOptions {
  /** Where the app's JSON log lines go (at LOG_LEVEL); silent by default. */
  log?: DestinationStream
  /** Wraps the cache the settings select, to observe it or to slow it down. */
  wrapCache?: (cache: ResponseCache) => ResponseCache | Promise<ResponseCache>
}

/** Starts the app in this process on a free port, the way src/server.ts does. */
export async function startApp(env: NodeJS.ProcessEnv, options: StartOptions = {}): Promise<RunningApp> {
  const settings = loadSettings({ LOG_LEVEL: 'silent', ...env, PORT: '0', HOST: '127.0.0.1' })
  const logger = createLogger(settings.logLevel, options.log)
  const database = await openDatabase(settings.database, logger)
  await migrate(database.pool, logger, settings.database)
  const opened = openCache(settings.cache, logger)
  const cache = options.wrapCache ? await options.wrapCache(opened) : opened
  const app = await buildApp({ settings, logger, database, cache })
  const url = await app.listen({ host: settings.host, port: 0 })
  return { app, cache, database, url, close: () => app.close() }
}

export interface BackendStore {
  env: NodeJS.ProcessEnv
  dispose(): Promise<void>
}

/** A fresh, empty store for one backend: a new PostgreSQL database or a new PGlite directory. */
export async function freshStore(backend: Backend): Promise<BackendStore> {
  if (backend === 'postgres') {
    const database = await createTestDatabase()
    return { env: { DATABASE_URL: database.url }, dispose: () => database.drop() }
  }
  const dataDir = await mkdtemp(join(tmpdir(), 'fullstack-pglite-'))
  return { env: { DATA_DIR: dataDir }, dispose: () => rm(dataDir, { recursive: true, force: true }) }
}
