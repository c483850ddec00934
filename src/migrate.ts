import { loadSettings } from './config/settings.js'
import { openDatabase } from './database/database.js'
import { migrate } from './database/migrations.js'
import { createLogger } from './telemetry/logger.js'

const settings = loadSettings()
const logger = createLogger(settings.logLevel)
const database = await openDatabase(settings.database, logger)
try {
  await migrate(database.pool, logger, settings.database)
} finally {
  await database.close()
}
