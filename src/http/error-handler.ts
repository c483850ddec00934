import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type {
  ConnectionError,
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  FastifySchemaValidationError,
} from 'fastify'
import {
  Conflict,
  DatabaseBusy,
  DatabaseContention,
  DatabaseFailure,
  DatabaseTimeout,
  InvalidValue,
} from '../database/errors.js'
import { trackAllowedMethods } from './allowed-methods.js'
import { HttpProblem, Problem, notFound, sendProblem, validationProblem, type FieldError } from './problem.js'

const typeNames: Record<string, string> = {
  string: 'a string',
  object: 'a JSON object',
  array: 'an array',
  boolean: 'true or false',
  number: 'a number',
  null: 'null',
}

/** What a whole-number field accepts, in one sentence whichever of its rules failed. */
export function wholeNumberRule(schema: object): string {
  const { minimum, maximum } = schema as { minimum?: number; maximum?: number }
  return minimum !== undefined && maximum !== undefined
    ? `must be a whole number from ${minimum} to ${maximum}`
    : 'must be a whole number'
}

/** A sentence for people from one validator error (the validator runs with `verbose`, for parentSchema). */
function describe(error: FastifySchemaValidationError): string {
  const schema = ((error as { parentSchema?: Record<string, unknown> }).parentSchema ?? {}) as {
    type?: string
    minimum?: number
    maximum?: number
    minLength?: number
    maxLength?: number
    properties?: Record<string, unknown>
  }
  if (schema.type === 'integer' && ['type', 'minimum', 'maximum', 'multipleOf'].includes(error.keyword)) {
    return wholeNumberRule(schema)
  }
  switch (error.keyword) {
    case 'required':
      return 'is required'
    case 'additionalProperties':
      return 'is not an accepted field'
    case 'minProperties':
      return `must contain at least one of ${Object.keys(schema.properties ?? {}).join(', ')}`
    case 'type':
      return `must be ${typeNames[String(error.params.type)] ?? String(error.params.type)}`
    case 'minLength':
      return error.params.limit === 1 ? 'must not be empty' : `must be at least ${error.params.limit} characters long`
    case 'maxLength':
      return `must be at most ${error.params.limit} characters long`
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
  FST_ERR_CTP_BODY_TOO_LARGE: '/problems/body-too-large',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: '/problems/invalid-content-length',
  FST_ERR_CTP_EMPTY_JSON_BODY: '/problems/malformed-json',
  FST_ERR_CTP_INVALID_JSON_BODY: '/problems/malformed-json',
}

const retryLater = { 'retry-after': '2' }

/** The database layer's domain errors (./database/errors.ts) and the features' refinements of them. */
function fromDomainError(error: unknown): HttpProblem | undefined {
  if (error instanceof Conflict) return new HttpProblem(409, error.message, `/problems/${error.reason}`)
  if (error instanceof InvalidValue) {
    return new HttpProblem(400, 'A value is not acceptable to the database.', '/problems/invalid-value')
  }
  if (error instanceof DatabaseBusy) {
    return new HttpProblem(503, 'The database is busy; try again shortly.', '/problems/database-busy', retryLater)
  }
  if (error instanceof DatabaseTimeout) {
    return new HttpProblem(503, 'The database took too long to answer.', '/problems/database-timeout', retryLater)
  }
  if (error instanceof DatabaseContention) {
    return new HttpProblem(
      503,
      'Concurrent changes kept conflicting with this one; try again shortly.',
      '/problems/database-contention',
      retryLater,
    )
  }
  if (error instanceof DatabaseFailure) {
    return new HttpProblem(503, 'The database is unavailable; try again shortly.', '/problems/database-unavailable', retryLater)
  }
  return undefined
}

function toHttpProblem(error: FastifyError): HttpProblem | undefined {
  if (error instanceof HttpProblem) return error
  if (error.validation) {
    return validationProblem(error.validation.map((item) => fieldError(error.validationContext ?? 'request', item)))
  }
  const fromDomain = fromDomainError(error)
  if (fromDomain) return fromDomain
  if (error instanceof SyntaxError) {
    const detail = error.message.includes('forbidden prototype property')
      ? 'The body uses a forbidden key (__proto__ or constructor.prototype).'
      : 'The body is not valid JSON.'
    return new HttpProblem(400, detail, '/problems/malformed-json')
  }
  if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return new HttpProblem(
      415,
      'The body must be JSON, sent with the header `Content-Type: application/json`.',
      '/problems/unsupported-media-type',
    )
  }
  const status = error.statusCode
  if (status !== undefined && status >= 400 && status < 500) {
    return new HttpProblem(status, error.message, fastifyClientErrors[error.code] ?? 'about:blank')
  }
  return undefined
}

/** Call before any route is registered: the 405 answers need every route's methods. */
export function registerProblemHandlers(app: FastifyInstance): void {
  const allowedMethods = trackAllowedMethods(app)
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
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!
    const allowed = allowedMethods(path)
    if (allowed.length === 0) return sendProblem(reply, notFound(`No route for ${request.method} ${path}.`))
    const methods = allowed.join(', ')
    return sendProblem(
      reply,
      new HttpProblem(405, `${path} does not answer ${request.method}; it answers ${methods}.`, '/problems/method-not-allowed', {
        allow: methods,
      }),
    )
  })
}

/** Fastify's `frameworkErrors`: a URL the router cannot read becomes a problem like any other. */
export function answerFrameworkError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  if (error.code === 'FST_ERR_BAD_URL') {
    sendProblem(reply, new HttpProblem(400, 'The URL is not valid (bad percent-encoding).', '/problems/bad-url'))
  } else if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    sendProblem(reply, new HttpProblem(414, 'A path segment of the URL is too long.', '/problems/bad-url'))
  } else {
    request.log.error({ err: error }, 'request failed before routing')
    sendProblem(reply, new HttpProblem(500, 'The server could not complete the request.'))
  }
}

const connectionProblems: Record<string, [number, string]> = {
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'The request did not arrive in time.'],
  HPE_HEADER_OVERFLOW: [431, 'The request headers are too large.'],
}

/**
 * Fastify's `clientErrorHandler`, for requests Node's HTTP parser refuses before Fastify sees them
 * (malformed HTTP, headers too large, or too slow to arrive): answers in problem+json, then closes.
 */
export function answerClientError(error: ConnectionError, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const [status, detail] = connectionProblems[error.code] ?? [400, 'The request is not valid HTTP.']
  const title = STATUS_CODES[status]!
  const body = JSON.stringify({ type: 'about:blank', title, status, detail })
  // An answer to HEAD has no body, even when the rest of the request could not be read.
  const packet: unknown = error.rawPacket
  const isHead = Buffer.isBuffer(packet) && packet.subarray(0, 5).toString('latin1') === 'HEAD '
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${title}\r\nContent-Type: application/problem+json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${isHead ? '' : body}`,
    )
  }
  socket.destroy()
}
