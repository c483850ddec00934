import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { ResponseCache } from './cache/response-cache.js'
import type { Settings } from './config/settings.js'
import type { Database } from './database/database.js'
import { latestMigration } from './database/migrations.js'
import { registerDocs } from './http/docs.js'
import { registerProblemHandlers } from './http/error-handler.js'
import { healthRoutes } from './http/health.js'
import { useStrictValidation } from './http/validation.js'
import { requestId } from './telemetry/logger.js'
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
  const app = Fastify({
    loggerInstance,
    genReqId: requestId,
    bodyLimit: settings.http.bodyLimitBytes,
    requestTimeout: 30_000,
    connectionTimeout: 60_000,
  }).withTypeProvider<TypeBoxTypeProvider>()

  let closing = false
  app.addHook('preClose', async () => {
    closing = true
  })
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })
  app.addHook('onSend', async (_request, reply) => {
    // While shutting down, answers end their keep-alive connection so the server can close.
    if (closing) reply.header('connection', 'close')
  })
  app.addHook('onClose', async () => {
    await cache.close()
    await database.close()
  })

  app.removeContentTypeParser('text/plain')
  useStrictValidation(app)
  registerProblemHandlers(app)
  await registerDocs(app)

  await app.register(healthRoutes, { database, cache, latestMigration: await latestMigration() })
  await app.register(usersRoutes, { repository: new UsersRepository(database), cache })
  return app
}
