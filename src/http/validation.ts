import { Ajv, type Options } from 'ajv'
import addFormatsModule from 'ajv-formats'
import type { FastifyInstance } from 'fastify'

const addFormats = addFormatsModule.default

function ajv(options: Options): Ajv {
  const instance = new Ajv({ allErrors: true, verbose: true, removeAdditional: false, useDefaults: true, strict: false, ...options })
  addFormats(instance, ['email', 'date-time'])
  return instance
}

/**
 * JSON bodies are taken as sent: a number is not a name. Query strings and path parameters are text,
 * so there numbers are converted.
 */
export function useStrictValidation(app: FastifyInstance): void {
  const body = ajv({ coerceTypes: false })
  const text = ajv({ coerceTypes: 'array' })
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? body : text).compile(schema))
}
