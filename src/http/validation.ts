import { Ajv, type AnySchema, type Options } from 'ajv'
import addFormatsModule from 'ajv-formats'
import type { FastifyInstance, FastifySchemaCompiler } from 'fastify'

const addFormats = addFormatsModule.default

// Fastify's type for this factory describes its own Ajv compiler, not the (schema def) => validator it calls.
type ValidatorFactory = NonNullable<NonNullable<Parameters<FastifyInstance['setSchemaController']>[0]['compilersFactory']>['buildValidator']>

function ajv(options: Options): Ajv {
  const instance = new Ajv({ allErrors: true, verbose: true, removeAdditional: false, useDefaults: true, strict: false, ...options })
  addFormats(instance, ['email', 'date-time'])
  return instance
}

/**
 * JSON bodies are taken as sent: a number is not a name. Query strings and path parameters are text,
 * so there numbers are converted. Fastify builds one validator per plugin context from the shared
 * schemas (`addSchema`) that context sees, so routes can refer to them by `$ref`.
 */
export function useStrictValidation(app: FastifyInstance): void {
  const buildValidator = (sharedSchemas: Record<string, AnySchema>): FastifySchemaCompiler<AnySchema> => {
    const body = ajv({ coerceTypes: false })
    const text = ajv({ coerceTypes: 'array' })
    for (const schema of Object.values(sharedSchemas)) {
      body.addSchema(schema)
      text.addSchema(schema)
    }
    return ({ schema, httpPart }) => (httpPart === 'body' ? body : text).compile(schema)
  }
  app.setSchemaController({ compilersFactory: { buildValidator: buildValidator as unknown as ValidatorFactory } })
}
