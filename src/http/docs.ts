import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'

export async function registerDocs(app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Users API',
        version: '1.0.0',
        description: 'Users stored in PostgreSQL. Every error is application/problem+json (RFC 9457).',
      },
      tags: [{ name: 'users' }, { name: 'health' }, { name: 'operations' }],
    },
  })
  await app.register(swaggerUi, { routePrefix: '/docs' })
  app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger())
}
