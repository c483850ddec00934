import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Settings } from './config/settings.js'
import type { Database } from './database/database.js'
import { latestMigration } from './database/migrations.js'
import { registerDocs } from './http/docs.js'
import { registerProblemHandlers } from './http/error-handler.js'
import { closeConnectionsGracefully } from './http/graceful-close.js'
import { healthRoutes } from './http/health.js'
import { useStrictValidation } from './http/validation.js'
import { requestId } from './telemetry/logger.js'
import { UsersRepository } from './users/repository.js'
import { usersRoutes } from './users/routes.js'

export interface AppDependencies {
  settings: Settings
  logger: Logger
  database: Database
}

/** The HTTP application; closing it closes the database it was given. */
export async function buildApp({ settings, logger, database }: AppDependencies): Promise<FastifyInstance> {
  const loggerInstance: FastifyBaseLogger = logger
  const app = Fastify({
    loggerInstance,
    genReqId: requestId,
    bodyLimit: settings.http.bodyLimitBytes,
    requestTimeout: 30_000,
    connectionTimeout: 60_000,
  }).withTypeProvider<TypeBoxTypeProvider>()

  closeConnectionsGracefully(app)
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })
  app.addHook('onClose', () => database.close())

  app.removeContentTypeParser('text/plain')
  useStrictValidation(app)
  registerProblemHandlers(app)
  await registerDocs(app)

  await app.register(healthRoutes, { database, latestMigration: await latestMigration() })
  await app.register(usersRoutes, { repository: new UsersRepository(database) })
  return app
}
