import { loadSettings } from './config/settings.js'
import { exitOnStartupFailure, openMigratedDatabase } from './database/startup.js'
import { createLogger } from './telemetry/logger.js'

const settings = loadSettings()
const logger = createLogger(settings.logLevel)
const database = await openMigratedDatabase(settings.database, logger, { migrateIt: true }).catch((error: unknown) =>
  exitOnStartupFailure(error, logger),
)
await database.close()
