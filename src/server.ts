import cluster from 'node:cluster'
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { openCache } from './cache/open-cache.js'
import { everyWorkerStoppedAccepting, superviseWorkers } from './cluster.js'
import { loadSettings, refuseOpenWritesInProduction, SettingsError, type Settings } from './config/settings.js'
import { exitOnStartupFailure, openMigratedDatabase } from './database/startup.js'
import { createLogger } from './telemetry/logger.js'

let settings: Settings
try {
  settings = loadSettings()
  refuseOpenWritesInProduction(settings)
} catch (error) {
  if (!(error instanceof SettingsError)) throw error
  console.error(error.message)
  process.exit(1)
}

const logger = createLogger(settings.logLevel)

if (settings.workers > 1 && cluster.isPrimary) {
  await superviseWorkers(settings, logger)
} else {
  // A cluster's primary has migrated already.
  const database = await openMigratedDatabase(settings.database, logger, { migrateIt: cluster.isPrimary }).catch(
    (error: unknown) => exitOnStartupFailure(error, logger),
  )
  const cache = openCache(settings.cache, logger)
  const app = await buildApp({ settings, logger, database, cache })

  // A worker stops when its primary says so; Ctrl-C in a terminal reaches the primary too.
  const signals = cluster.isWorker ? { skip: ['SIGINT' as const] } : {}
  if (cluster.isWorker) process.on('SIGINT', () => {})
  const { shutdownDelayMs, shutdownGraceMs } = settings.http
  closeWithGrace({ delay: shutdownDelayMs + shutdownGraceMs, logger, ...signals }, async ({ signal, err }) => {
    if (err) logger.error({ err }, 'shutting down after an unexpected error')
    else logger.info({ signal, shutdownDelayMs }, 'shutting down')
    await app.shutDown(cluster.isWorker ? everyWorkerStoppedAccepting : undefined)
    // close-with-grace exits next: a log write still on its way would be cut off, or overtaken by pino's exit flush.
    await new Promise<void>((resolve) => logger.flush(() => resolve()))
  })

  await app.listen({ host: settings.host, port: settings.port })
}
