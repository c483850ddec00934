import { HttpProblem } from '../http/problem.js'

const retryAfterSeconds = '2'

const unavailable = (detail: string) =>
  new HttpProblem(503, detail, '/problems/database-unavailable', { 'retry-after': retryAfterSeconds })

const networkErrorCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN'])

/** Maps node-postgres and PostgreSQL failures (SQLSTATE) to answers; undefined when it is not one. */
export function fromDatabaseError(error: unknown): HttpProblem | undefined {
  if (!(error instanceof Error)) return undefined
  const code = (error as { code?: unknown }).code
  if (typeof code === 'string') {
    if (code === '23505') return new HttpProblem(409, 'A unique value is already taken.', '/problems/conflict')
    if (code === '57014') {
      return new HttpProblem(503, 'The database took too long to answer.', '/problems/database-timeout', {
        'retry-after': retryAfterSeconds,
      })
    }
    if (code.startsWith('22') || code === '23514') {
      return new HttpProblem(400, 'A value is not acceptable to the database.', '/problems/invalid-value')
    }
    if (code.startsWith('08') || code.startsWith('53') || ['57P01', '57P02', '57P03'].includes(code)) {
      return unavailable('The database is unavailable; try again shortly.')
    }
    if (networkErrorCodes.has(code)) return unavailable('The database cannot be reached; try again shortly.')
  }
  const message = error.message
  if (
    message.includes('timeout exceeded when trying to connect') ||
    message.includes('Connection terminated') ||
    message.includes('Query read timeout') ||
    message.includes('Client has encountered a connection error')
  ) {
    return unavailable('The database cannot be reached; try again shortly.')
  }
  return undefined
}
