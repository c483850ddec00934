/**
 * Issue 9, item 4: requests that fight over emails or rows never get a 5xx, and what each one was
 * told is true of the state the database ends in.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startApp, type RunningApp } from './support/app.js'
import { timedRequest, type Outcome } from './support/load.js'
import { createTestDatabase, withClient, type TestDatabase } from './support/postgres.js'
import { logLines } from './support/log.js'

type Answered = Outcome & { json?: { id: number; name: string; email: string; type?: string } }
type Method = 'PATCH' | 'PUT'

const tally = (answers: Outcome[]) =>
  answers.reduce<Record<number, number>>((counts, answer) => ({ ...counts, [answer.status]: (counts[answer.status] ?? 0) + 1 }), {})

/** A test database whose sessions start with these settings (the app's pool connects after this). */
async function databaseWith(settings: Record<string, string>): Promise<TestDatabase> {
  const database = await createTestDatabase()
  const name = new URL(database.url).pathname.slice(1)
  await withClient(database.url, async (client) => {
    for (const [setting, value] of Object.entries(settings)) await client.query(`ALTER DATABASE ${name} SET ${setting} = '${value}'`)
  })
  return database
}


const retriedAfter = (log: ReturnType<typeof logLines>, sqlState: string) =>
  log.lines.filter((line) => line.msg.startsWith('statement retried') && line.sqlState === sqlState).length

describe('concurrent email changes', () => {
  let database: TestDatabase
  let server: RunningApp
  const log = logLines()
  before(async () => {
    // PostgreSQL finds deadlocks after deadlock_timeout (1 s by default); sooner keeps the rounds short.
    database = await databaseWith({ deadlock_timeout: '50ms' })
    // More statements at once make more deadlocks, so fewer rounds are needed to see some.
    server = await startApp(
      { DATABASE_URL: database.url, RATE_LIMIT_MAX: '0', CACHE_ENABLED: 'false', DATABASE_POOL_MAX: '20', LOG_LEVEL: 'info' },
      { log: log.stream },
    )
  })
  after(async () => {
    await server?.close()
    await database?.drop()
  })

  /** Users made in one statement, so that rounds are short and the races many. */
  const insertUsers = (emails: string[]) =>
    withClient(database.url, async (client) => {
      const { rows } = await client.query<{ id: number; email: string }>(
        `INSERT INTO users (name, email) SELECT 'Racer', unnest($1::text[]) RETURNING id, email`,
        [emails],
      )
      return rows
    })
  const change = (method: Method, id: number, email: string): Promise<Answered> =>
    timedRequest(server.url, `${method} /users/${id} ${email}`, method, `/users/${id}`, method === 'PUT' ? { name: 'Racer', email } : { email })

  it('answers swaps, takes of one free email and chains with 200 or 409 only, each true to the final state', async () => {
    const swapPairs = 10
    const answers: Answered[] = []
    // Rounds go on until PostgreSQL has reported a deadlock, so the race is known to have happened.
    for (let round = 0; round < 20 || (retriedAfter(log, '40P01') === 0 && round < 200); round++) {
      const email = (who: string) => `${who}-${round}@race.example`
      const people = [...Array.from({ length: swapPairs * 2 }, (_, i) => `s${i}`), 'c', 'd', 'e', 'f']
      const inserted = new Map((await insertUsers(people.map(email))).map((user) => [user.email, user]))
      const users = new Map(people.map((who) => [who, inserted.get(email(who))!]))
      const id = (who: string) => users.get(who)!.id
      const [first, second]: [Method, Method] = round % 2 ? ['PATCH', 'PUT'] : ['PUT', 'PATCH']
      const requests: { id: number; email: string; method: Method }[] = [
        // pairs of users swap their emails
        ...Array.from({ length: swapPairs }, (_, pair) => [
          { id: id(`s${2 * pair}`), email: email(`s${2 * pair + 1}`), method: first },
          { id: id(`s${2 * pair + 1}`), email: email(`s${2 * pair}`), method: second },
        ]).flat(),
        // c and d both take an email nobody has
        { id: id('c'), email: email('free'), method: first },
        { id: id('d'), email: email('free'), method: second },
        // e takes f's email while f takes c's, which c may be giving up
        { id: id('e'), email: email('f'), method: second },
        { id: id('f'), email: email('c'), method: first },
      ]
      const settled = await Promise.all(
        requests.map(async (request) => ({ ...request, answer: await change(request.method, request.id, request.email) })),
      )
      const initial = new Map([...users.values()].map((user) => [user.id, user.email]))
      const final = await withClient(database.url, async (client) => {
        const { rows } = await client.query<{ id: number; email: string }>('SELECT id, email FROM users WHERE id = ANY($1)', [
          [...initial.keys()],
        ])
        return new Map(rows.map((row) => [row.id, row.email]))
      })
      assert.equal(new Set(final.values()).size, final.size, `round ${round}: two users with one email`)
      for (const { id: changed, email: wanted, answer } of settled) {
        answers.push(answer)
        const context = `round ${round}: ${answer.operation} -> ${answer.status} ${answer.body}`
        if (answer.status === 200) {
          assert.equal(answer.json?.email, wanted, context)
          assert.equal(final.get(changed), wanted, context)
        } else {
          assert.equal(answer.status, 409, context)
          assert.equal(answer.json?.type, '/problems/email-taken', context)
          assert.equal(final.get(changed), initial.get(changed), context)
          const holders = [...initial, ...final].filter(([holder, held]) => held === wanted && holder !== changed)
          assert.ok(holders.length > 0, `${context}: nobody else held the email`)
        }
      }
    }
    assert.deepEqual(Object.keys(tally(answers)), ['200', '409'], JSON.stringify(tally(answers)))
    assert.ok(retriedAfter(log, '40P01') > 0, `no deadlock in ${answers.length} requests`)
  })

  it('gives one 201 and 409s to bursts of 50 creates of one email on the default pool of 10, reusing its connections', async () => {
    const defaults = await startApp({ DATABASE_URL: database.url, RATE_LIMIT_MAX: '0', CACHE_ENABLED: 'false' })
    let opened = 0
    defaults.database.pool.on('connect', () => opened++)
    try {
      for (let burst = 0; burst < 3; burst++) {
        const email = `burst-${burst}@race.example`
        const answers = await Promise.all(
          Array.from({ length: 50 }, () => timedRequest(defaults.url, 'create', 'POST', '/users', { name: 'Burst', email })),
        )
        const unexpected = answers.filter((answer) => answer.status !== 201 && answer.status !== 409)
        assert.deepEqual(tally(answers), { 201: 1, 409: 49 }, JSON.stringify(unexpected))
      }
    } finally {
      await defaults.close()
    }
    // A refused write leaves its session in the pool: no reconnect per 409.
    assert.ok(opened <= 10, `${opened} connections opened for 150 requests on a pool of 10`)
  })

  it('answers 503 "busy" with Retry-After, not "cannot be reached", when every pool connection stays in use', async () => {
    const busy = await startApp({
      DATABASE_URL: database.url,
      RATE_LIMIT_MAX: '0',
      CACHE_ENABLED: 'false',
      DATABASE_POOL_MAX: '1',
      DATABASE_CONNECT_TIMEOUT_MS: '200',
      DATABASE_STATEMENT_TIMEOUT_MS: '5000',
    })
    try {
      const user = await (await fetch(`${busy.url}/users`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'Held', email: 'held@race.example' }),
      }).then((answer) => answer.json())) as { id: number }
      await withClient(database.url, async (locker) => {
        await locker.query('BEGIN')
        await locker.query('SELECT * FROM users WHERE id = $1 FOR UPDATE', [user.id])
        const holding = timedRequest(busy.url, 'held', 'PATCH', `/users/${user.id}`, { name: 'Waiting' })
        // The PATCH holds the only connection while it waits for the row lock.
        for (let i = 0; busy.database.pool.waitingCount + busy.database.pool.idleCount > 0 || busy.database.pool.totalCount === 0; i++) {
          assert.ok(i < 200, 'the PATCH never took the connection')
          await new Promise((resolve) => setTimeout(resolve, 10))
        }
        const queued = await timedRequest(busy.url, 'queued', 'GET', `/users/${user.id}`)
        await locker.query('ROLLBACK')
        assert.equal(queued.status, 503, queued.body)
        assert.match(queued.retryAfter ?? '', /^\d+$/)
        assert.equal(JSON.parse(queued.body).type, '/problems/database-busy')
        assert.match(JSON.parse(queued.body).detail, /busy/)
        assert.equal((await holding).status, 200)
      })
    } finally {
      await busy.close()
    }
  })
})

describe('concurrent changes of one user under REPEATABLE READ', () => {
  let database: TestDatabase
  let server: RunningApp
  const log = logLines()
  before(async () => {
    // As some operators configure it: a second writer of a row then fails with 40001 instead of waiting.
    database = await databaseWith({ default_transaction_isolation: 'repeatable read' })
    server = await startApp(
      { DATABASE_URL: database.url, RATE_LIMIT_MAX: '0', CACHE_ENABLED: 'false', LOG_LEVEL: 'info' },
      { log: log.stream },
    )
  })
  after(async () => {
    await server?.close()
    await database?.drop()
  })

  it('retries serialization failures, then answers 200 or 503 with Retry-After, never 500', async () => {
    const created = await timedRequest(server.url, 'create', 'POST', '/users', { name: 'Start', email: 'serial@race.example' })
    const { id } = created.json as { id: number }
    const answers: Outcome[] = []
    for (let round = 0; round < 5; round++) {
      const names = Array.from({ length: 8 }, (_, writer) => `Round ${round} writer ${writer}`)
      const settled = await Promise.all(names.map((name) => timedRequest(server.url, name, 'PATCH', `/users/${id}`, { name })))
      answers.push(...settled)
      for (const answer of settled.filter((answer) => answer.status === 503)) {
        assert.equal(JSON.parse(answer.body).type, '/problems/database-contention', answer.body)
        assert.match(answer.retryAfter ?? '', /^\d+$/)
      }
      const stored = await withClient(database.url, (client) => client.query('SELECT name FROM users WHERE id = $1', [id]))
      const acknowledged = settled.filter((answer) => answer.status === 200).map((answer) => answer.operation)
      assert.ok(acknowledged.includes(stored.rows[0].name), `stored ${stored.rows[0].name}, acknowledged ${acknowledged}`)
    }
    assert.deepEqual(
      Object.keys(tally(answers)).filter((status) => status !== '200' && status !== '503'),
      [],
      JSON.stringify(tally(answers)),
    )
    assert.ok(retriedAfter(log, '40001') > 0, 'no serialization failure happened')
  })
})
