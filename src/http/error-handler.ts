import type { FastifyError, FastifyInstance, FastifySchemaValidationError } from 'fastify'
import { fromDatabaseError } from '../database/errors.js'
import { HttpProblem, Problem, notFound, sendProblem, validationProblem, type FieldError } from './problem.js'

function describe(error: FastifySchemaValidationError): string {
  switch (error.keyword) {
    case 'required':
      return 'is required'
    case 'additionalProperties':
      return 'is not an accepted field'
    case 'pattern':
      return 'must not contain control characters or unpaired surrogates'
    case 'format':
      return error.params.format === 'email' ? 'must be an email address' : `must be a ${error.params.format}`
    default:
      return error.message ?? 'is invalid'
  }
}

function fieldError(part: string, error: FastifySchemaValidationError): FieldError {
  const field = error.params.missingProperty ?? error.params.additionalProperty
  const pointer = error.instancePath + (typeof field === 'string' ? `/${field}` : '')
  return { in: part, pointer, detail: describe(error) }
}

const fastifyClientErrors: Record<string, string> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: '/problems/unsupported-media-type',
  FST_ERR_CTP_BODY_TOO_LARGE: '/problems/body-too-large',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: '/problems/invalid-content-length',
  FST_ERR_CTP_EMPTY_JSON_BODY: '/problems/malformed-json',
  FST_ERR_CTP_INVALID_JSON_BODY: '/problems/malformed-json',
}

function toHttpProblem(error: FastifyError): HttpProblem | undefined {
  if (error instanceof HttpProblem) return error
  if (error.validation) {
    return validationProblem(error.validation.map((item) => fieldError(error.validationContext ?? 'request', item)))
  }
  const fromDatabase = fromDatabaseError(error)
  if (fromDatabase) return fromDatabase
  if (error instanceof SyntaxError) {
    const detail = error.message.includes('forbidden prototype property')
      ? 'The body uses a forbidden key (__proto__ or constructor.prototype).'
      : 'The body is not valid JSON.'
    return new HttpProblem(400, detail, '/problems/malformed-json')
  }
  const status = error.statusCode
  if (status !== undefined && status >= 400 && status < 500) {
    return new HttpProblem(status, error.message, fastifyClientErrors[error.code] ?? 'about:blank')
  }
  return undefined
}

export function registerProblemHandlers(app: FastifyInstance): void {
  app.addSchema(Problem)
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const problem = toHttpProblem(error)
    if (problem) {
      if (problem.status >= 500) request.log.warn({ err: error }, 'request failed: %s', problem.message)
      return sendProblem(reply, problem)
    }
    request.log.error({ err: error }, 'request failed')
    return sendProblem(reply, new HttpProblem(500, 'The server could not complete the request.'))
  })
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, notFound(`No route for ${request.method} ${request.url.split('?')[0]}.`)),
  )
}
