import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import type { Settings } from '../config/settings.js'
import { healthPaths } from './health.js'
import { writeMethods } from './security.js'

const bearer = 'bearer'

/** OpenAPI 3.1 at /openapi.json, Swagger UI at /docs. Register before the routes it documents. */
export async function registerDocs(app: FastifyInstance, { apiToken, apiTokenReads }: Settings['security']): Promise<void> {
  const needsToken = (method: string, url: string) =>
    apiToken !== undefined && (writeMethods.has(method) || (apiTokenReads && !healthPaths.has(url)))

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Users API',
        version: '1.0.0',
        description: 'Users stored in PostgreSQL. Every error is application/problem+json (RFC 9457).',
      },
      tags: [{ name: 'users' }, { name: 'health' }, { name: 'operations' }],
      ...(apiToken !== undefined
        ? { components: { securitySchemes: { [bearer]: { type: 'http', scheme: 'bearer', description: 'The API_TOKEN' } } } }
        : {}),
    },
    // Shared schemas are named by their $id (Problem, User, NewUser…) rather than def-0, def-1…
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`),
    },
    transform: ({ schema, url, route }) => {
      const method = [route.method].flat()[0]!
      if (!schema || !needsToken(method, url)) return { schema, url }
      return {
        schema: { ...schema, security: [{ [bearer]: [] }], response: { ...(schema.response as object | undefined), 401: { $ref: 'Problem#' } } },
        url,
      }
    },
    // Tags without an operation (operations, when /metrics is off) are left out.
    transformObject: (documentObject) => {
      if (!('openapiObject' in documentObject)) return documentObject.swaggerObject
      const { openapiObject } = documentObject
      const used = new Set(
        Object.values(openapiObject.paths ?? {}).flatMap((operations) =>
          Object.values(operations ?? {}).flatMap((operation) => (operation as { tags?: string[] }).tags ?? []),
        ),
      )
      return { ...openapiObject, tags: openapiObject.tags?.filter((tag) => used.has(tag.name)) }
    },
  })
  // Swagger UI's explore box shows the first of `urls`; the document it loads is the one served below.
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { urls: [{ url: '/openapi.json', name: '/openapi.json' }] } })
  app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger())
}
