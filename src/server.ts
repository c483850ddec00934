import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { openCache } from './cache/open-cache.js'
import { loadSettings, SettingsError } from './config/settings.js'
import { openDatabase } from './database/database.js'
import { migrate } from './database/migrations.js'
import { createLogger } from './telemetry/logger.js'

let settings
try {
  settings = loadSettings()
} catch (error) {
  if (!(error instanceof SettingsError)) throw error
  console.error(error.message)
  process.exit(1)
}

const logger = createLogger(settings.logLevel)
const database = await openDatabase(settings.database, logger)
await migrate(database.pool, logger)
const cache = openCache(settings.cache, logger)
const app = await buildApp({ settings, logger, database, cache })

closeWithGrace({ delay: settings.http.shutdownGraceMs, logger }, async ({ signal, err }) => {
  if (err) logger.error({ err }, 'shutting down after an unexpected error')
  else logger.info({ signal }, 'shutting down')
  await app.close()
})

await app.listen({ host: settings.host, port: settings.port })
