import pg from 'pg'

/**
 * What can go wrong with a statement, in the service's terms. The database layer raises these (with
 * the driver's error as `cause`); only the HTTP layer decides which answer each one gets.
 */

/** The database could not run the statement for reasons of its own; trying later may succeed. */
export class DatabaseFailure extends Error {
  override name = 'DatabaseFailure'
}

/** The database cannot be reached, refused the connection, or lost it (restart, shutdown, network). */
export class DatabaseUnavailable extends DatabaseFailure {
  override name = 'DatabaseUnavailable'
}

/** Every connection of the pool stayed in use for the whole connect timeout: too much load, not an outage. */
export class DatabaseBusy extends DatabaseFailure {
  override name = 'DatabaseBusy'
}

/** The statement ran longer than the statement timeout (usually behind a lock) and was cancelled. */
export class DatabaseTimeout extends DatabaseFailure {
  override name = 'DatabaseTimeout'
}

/** Deadlocks or serialization failures went on through every retry of the statement. */
export class DatabaseContention extends DatabaseFailure {
  override name = 'DatabaseContention'
}

/** A write that would break a uniqueness rule; `reason` names the rule for clients. */
export class Conflict extends Error {
  override name = 'Conflict'
  constructor(
    message: string,
    readonly reason = 'conflict',
    options?: ErrorOptions,
  ) {
    super(message, options)
  }
}

/** A unique index refused the write; `constraint` is the index's name. */
export class UniqueViolation extends Conflict {
  override name = 'UniqueViolation'
  constructor(
    readonly constraint: string | undefined,
    options?: ErrorOptions,
  ) {
    super('A unique value is already taken.', 'conflict', options)
  }
}

/** A value the database refuses: out of range, malformed, or against a CHECK constraint. */
export class InvalidValue extends Error {
  override name = 'InvalidValue'
}

/** SQLSTATEs after which running the same statement again may succeed. */
export const retryableCodes = new Set(['40P01', '40001'])

const networkErrorCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH'])

/** pg-pool's own errors, told apart by their text. */
const poolExhausted = 'timeout exceeded when trying to connect'
const lostConnection = ['Connection terminated', 'Query read timeout', 'Client has encountered a connection error']

export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}

/** The domain error for a node-postgres or PostgreSQL failure; undefined when it is none of them. */
export function toDatabaseError(error: unknown): Error | undefined {
  if (!(error instanceof Error)) return undefined
  const options = { cause: error }
  const code = sqlState(error)
  if (code !== undefined) {
    if (code === '23505') return new UniqueViolation((error as { constraint?: string }).constraint, options)
    if (code === '57014') return new DatabaseTimeout('The statement took too long and was cancelled.', options)
    if (code.startsWith('22') || code === '23514') return new InvalidValue('The database refused a value.', options)
    if (code.startsWith('08') || code.startsWith('53') || ['57P01', '57P02', '57P03'].includes(code)) {
      return new DatabaseUnavailable(`The database refused or dropped the connection (${code}).`, options)
    }
    if (networkErrorCodes.has(code)) return new DatabaseUnavailable(`The database cannot be reached (${code}).`, options)
  }
  if (error.message.includes(poolExhausted)) {
    return new DatabaseBusy('Every connection of the pool stayed in use for the whole connect timeout.', options)
  }
  if (lostConnection.some((text) => error.message.includes(text))) {
    return new DatabaseUnavailable('The database connection failed or stopped answering.', options)
  }
  return undefined
}

/**
 * Whether the session survived the error: PostgreSQL reported it and only the statement failed. After
 * a network error, a client-side timeout or a FATAL error, the connection must not be used again.
 */
export function sessionSurvives(error: unknown): boolean {
  return error instanceof pg.DatabaseError && error.code !== undefined && !/^(08|53|57P|XX)/.test(error.code)
}
