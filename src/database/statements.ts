import { setTimeout as sleep } from 'node:timers/promises'
import type pg from 'pg'
import type { Logger } from 'pino'
import { DatabaseContention, retryableCodes, sessionSurvives, sqlState, toDatabaseError } from './errors.js'

/** Runs one statement on its own (autocommit) and returns its rows; failures are domain errors. */
export type RunStatement = <Row extends pg.QueryResultRow>(query: pg.QueryConfig) => Promise<Row[]>

const maxAttempts = 5
const firstBackoffMs = 10

/** Full jitter: a random wait up to a ceiling that doubles with each attempt, so retries spread out. */
const backoff = (attempt: number) => Math.random() * firstBackoffMs * 2 ** (attempt - 1)

/**
 * Unlike `pool.query`, which closes the connection after any failed statement, this keeps the session
 * when PostgreSQL reports an ordinary error (a duplicate email), so a burst of refused writes does not
 * make the pool reconnect once per answer.
 */
async function runOnce<Row extends pg.QueryResultRow>(pool: pg.Pool, query: pg.QueryConfig): Promise<Row[]> {
  const client = await pool.connect()
  // A connection that fails mid-statement also emits `error`; the statement's own rejection reports it.
  const ignore = () => {}
  client.on('error', ignore)
  try {
    const result = await client.query<Row>(query)
    client.release()
    return result.rows
  } catch (error) {
    client.release(sessionSurvives(error) ? undefined : (error as Error))
    throw error
  } finally {
    client.off('error', ignore)
  }
}

/**
 * A single statement that loses a deadlock or a serialization check has changed nothing, so it is run
 * again, up to `maxAttempts` times with jittered backoff; after that the contention is reported.
 */
export function statementRunner(pool: pg.Pool, logger: Logger): RunStatement {
  return async <Row extends pg.QueryResultRow>(query: pg.QueryConfig) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await runOnce<Row>(pool, query)
      } catch (error) {
        const code = sqlState(error)
        if (code === undefined || !retryableCodes.has(code)) throw toDatabaseError(error) ?? error
        if (attempt === maxAttempts) {
          throw new DatabaseContention(`The statement lost ${maxAttempts} deadlocks or serialization checks in a row.`, {
            cause: error,
          })
        }
        logger.info({ sqlState: code, attempt }, 'statement retried after a deadlock or serialization failure')
        await sleep(backoff(attempt))
      }
    }
  }
}
