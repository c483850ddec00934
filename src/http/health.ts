import type { FastifyPluginAsync } from 'fastify'
import { Type } from 'typebox'
import type { ResponseCache } from '../cache/response-cache.js'
import type { Database } from '../database/database.js'
import { migrationsTable } from '../database/migrations.js'
import { HttpProblem } from './problem.js'

export interface HealthOptions {
  database: Database
  cache: ResponseCache
  latestMigration: string
}

const Status = Type.Object({ status: Type.String() })

/** Probes stay open and unthrottled: orchestrators call them often and without credentials. */
export const healthPaths = new Set(['/healthz', '/readyz'])

export const healthRoutes: FastifyPluginAsync<HealthOptions> = async (app, { database, cache, latestMigration }) => {
  app.get('/healthz', { schema: { tags: ['health'], summary: 'The process is alive', response: { 200: Status } } }, () => ({
    status: 'ok',
  }))

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['health'],
        summary: 'The database is reachable and migrated, and the server is not shutting down',
        description:
          'A degraded cache is reported but does not fail readiness: reads then go to the database. ' +
          'From SIGTERM on the answer is 503, while requests are still served for SHUTDOWN_DELAY_MS.',
        response: {
          200: Type.Object({
            status: Type.String(),
            database: Type.String(),
            cache: Type.Object({ backend: Type.String(), status: Type.String() }),
          }),
        },
      },
    },
    async () => {
      if (app.shuttingDown) throw new HttpProblem(503, 'The server is shutting down.', '/problems/not-ready')
      let migrated: boolean
      try {
        const result = await database.pool.query(`SELECT 1 FROM ${migrationsTable} WHERE name = $1`, [latestMigration])
        migrated = result.rowCount === 1
      } catch {
        throw new HttpProblem(503, 'The database cannot be reached.', '/problems/not-ready', { 'retry-after': '2' })
      }
      if (!migrated) throw new HttpProblem(503, 'The database is not migrated.', '/problems/not-ready')
      return { status: 'ready', database: database.kind, cache: { backend: cache.backend, status: cache.health() } }
    },
  )
}
