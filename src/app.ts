import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { ResponseCache } from './cache/response-cache.js'
import type { Settings } from './config/settings.js'
import type { Database } from './database/database.js'
import { latestMigration } from './database/migrations.js'
import { routerOptions } from './http/allowed-methods.js'
import { registerDocs } from './http/docs.js'
import { answerClientError, answerFrameworkError, registerProblemHandlers } from './http/error-handler.js'
import { closeConnectionsGracefully } from './http/graceful-close.js'
import { healthRoutes } from './http/health.js'
import { useJsonBodyParser } from './http/json-body.js'
import { registerSecurity } from './http/security.js'
import { answerBeforeUnreadBody } from './http/unread-body.js'
import { useStrictValidation } from './http/validation.js'
import { registerWebPage } from './http/web-page.js'
import { AccessLog, requestId } from './telemetry/logger.js'
import { registerMetrics } from './telemetry/metrics.js'
import { UsersRepository } from './users/repository.js'
import { usersRoutes } from './users/routes.js'

export interface AppDependencies {
  settings: Settings
  logger: Logger
  database: Database
  cache: ResponseCache
}

/** The HTTP application; closing it closes the database and cache it was given. */
export async function buildApp({ settings, logger, database, cache }: AppDependencies): Promise<FastifyInstance> {
  const loggerInstance: FastifyBaseLogger = logger
  const { http } = settings
  const accessLog = new AccessLog(logger)
  const app = Fastify({
    loggerInstance,
    routerOptions,
    genReqId: requestId,
    logController: accessLog,
    bodyLimit: http.bodyLimitBytes,
    trustProxy: http.trustProxy,
    requestTimeout: http.requestTimeoutMs,
    keepAliveTimeout: http.keepAliveTimeoutMs,
    connectionTimeout: http.idleTimeoutMs,
    // Requests on connections still open while closing are served (closeConnectionsGracefully).
    return503OnClosing: false,
    http: {
      headersTimeout: http.headersTimeoutMs,
      // Node checks the headers and request timeouts this often (every 30 s by default).
      connectionsCheckingInterval: Math.min(1000, http.headersTimeoutMs),
      // Checked in registerSecurity, to answer in problem+json.
      requireHostHeader: false,
    },
    frameworkErrors: answerFrameworkError,
    clientErrorHandler: answerClientError,
  }).withTypeProvider<TypeBoxTypeProvider>()

  closeConnectionsGracefully(app, http.shutdownDelayMs)
  answerBeforeUnreadBody(app, http.requestTimeoutMs)
  app.addHook('onClose', async () => {
    accessLog.flush()
    await cache.close()
    await database.close()
  })

  app.removeContentTypeParser('text/plain')
  useJsonBodyParser(app, http.bodyMaxDepth)
  useStrictValidation(app)
  registerProblemHandlers(app)
  await registerSecurity(app, settings)
  if (http.docsEnabled) await registerDocs(app, settings.security)
  if (http.metricsEnabled) registerMetrics(app, { database, cache })
  await registerWebPage(app)

  await app.register(healthRoutes, { database, cache, latestMigration: await latestMigration() })
  await app.register(usersRoutes, { repository: new UsersRepository(database), cache })
  return app
}
