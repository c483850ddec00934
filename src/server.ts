import cluster from 'node:cluster'
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { openCache } from './cache/open-cache.js'
import { superviseWorkers } from './cluster.js'
import { loadSettings, SettingsError, type Settings } from './config/settings.js'
import { openDatabase } from './database/database.js'
import { migrate } from './database/migrations.js'
import { createLogger } from './telemetry/logger.js'

let settings: Settings
try {
  settings = loadSettings()
} catch (error) {
  if (!(error instanceof SettingsError)) throw error
  console.error(error.message)
  process.exit(1)
}

const logger = createLogger(settings.logLevel)

if (settings.workers > 1 && cluster.isPrimary) {
  await superviseWorkers(settings, logger)
} else {
  const database = await openDatabase(settings.database, logger)
  // A cluster's primary has migrated already.
  if (cluster.isPrimary) await migrate(database.pool, logger, settings.database)
  const cache = openCache(settings.cache, logger)
  const app = await buildApp({ settings, logger, database, cache })

  // A worker stops when its primary says so; Ctrl-C in a terminal reaches the primary too.
  const signals = cluster.isWorker ? { skip: ['SIGINT' as const] } : {}
  if (cluster.isWorker) process.on('SIGINT', () => {})
  closeWithGrace({ delay: settings.http.shutdownGraceMs, logger, ...signals }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'shutting down after an unexpected error')
    else logger.info({ signal }, 'shutting down')
    await app.close()
  })

  await app.listen({ host: settings.host, port: settings.port })
}
