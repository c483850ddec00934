/**
 * The fault cases of issue 6, against a PostgreSQL server this file starts (and stops) itself, with
 * the API driven over HTTP. Case 1, Redis killed under load, is in cache-faults.test.ts; case 4,
 * SIGTERM under load, needs the built server: it is in lifecycle.test.ts.
 */
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import type pg from 'pg'
import { startApp, type RunningApp } from './support/app.js'
import { timedRequest, WriteLoad, type Outcome } from './support/load.js'
import { withClient } from './support/postgres.js'
import { startPostgresServer, type PostgresServer } from './support/postgres-server.js'

/** How long PostgreSQL stays down each time, and how long the API may take to serve again after it is back. */
const outageMs = 4000
const recoveryWindowMs = 30_000

function assertUnavailable(outcome: Outcome): void {
  const context = JSON.stringify(outcome)
  assert.equal(outcome.status, 503, context)
  assert.match(outcome.contentType, /^application\/problem\+json/, context)
  assert.match(outcome.retryAfter ?? '', /^\d+$/, context)
  assert.doesNotMatch(outcome.body, /ECONNREFUSED|SELECT|INSERT|UPDATE|DELETE FROM|\bat \/|node_modules/, context)
}

const succeeded = (outcome: Outcome) => outcome.status >= 200 && outcome.status < 300

describe('faults', () => {
  let database: PostgresServer
  before(async () => {
    database = await startPostgresServer()
  })
  after(() => database?.dispose())

  describe('2. PostgreSQL restarted under load', () => {
    let server: RunningApp
    before(async () => {
      // Every read must reach PostgreSQL: a cached read would rightly succeed during the outage.
      server = await startApp({ DATABASE_URL: database.url, RATE_LIMIT_MAX: '0', CACHE_ENABLED: 'false' })
    })
    after(() => server?.close())

    it('fails fast with 503 during each outage, recovers by itself, and keeps every acknowledged write', async () => {
      const load = new WriteLoad(server.url, 6, 'restart')
      const firstSuccessAfter = async (time: number) => {
        for (const deadline = time + recoveryWindowMs; Date.now() < deadline; await sleep(50)) {
          const success = load.outcomes.find((outcome) => outcome.startedAt >= time && succeeded(outcome))
          if (success) return success.endedAt
        }
        return Infinity
      }
      // The server is down from `stopped` until `starting`, when it begins to come back.
      const outages: { stopping: number; stopped: number; starting: number; recovered: number }[] = []
      await sleep(1000)
      for (const mode of ['fast', 'immediate'] as const) {
        const stopping = Date.now()
        await database.stop(mode)
        const stopped = Date.now()
        assertUnavailable(await timedRequest(server.url, 'ready', 'GET', '/readyz'))
        await sleep(outageMs)
        const starting = Date.now()
        await database.start()
        const recovered = await firstSuccessAfter(starting)
        outages.push({ stopping, stopped, starting, recovered })
        await sleep(1000)
      }
      const outcomes = await load.stop()

      assert.deepEqual(outcomes.filter((outcome) => outcome.status === 0), [], 'requests without an answer')
      for (const [index, { stopping, stopped, starting, recovered }] of outages.entries()) {
        assert.ok(Number.isFinite(recovered), `no success within ${recoveryWindowMs} ms of the restart`)
        // Failing fast, counted rather than timed: a request that waited for the database instead
        // of answering 503 would still be open when it came back, seconds later.
        const waited = outcomes.filter(
          (outcome) => outcome.startedAt >= stopped && outcome.startedAt < stopped + outageMs / 2 && outcome.endedAt >= starting,
        )
        assert.deepEqual(waited, [], 'requests that waited for the database to come back')
        const during = outcomes.filter((outcome) => outcome.startedAt >= stopped && outcome.endedAt <= starting)
        assert.ok(during.length > 0, 'no request met the outage')
        during.forEach(assertUnavailable)
        const failures = outcomes.filter(
          (outcome) => outcome.endedAt >= stopping && outcome.startedAt < recovered && !succeeded(outcome),
        )
        failures.forEach(assertUnavailable)
        const next = outages[index + 1]?.stopping ?? Infinity
        const afterRecovery = outcomes.filter((outcome) => outcome.startedAt >= recovered && outcome.endedAt < next)
        assert.ok(afterRecovery.length > 0, 'no request after recovery')
        assert.deepEqual(afterRecovery.filter((outcome) => !succeeded(outcome)), [], 'failures once recovered')
      }
      const beforeFirstOutage = outcomes.filter((outcome) => outcome.endedAt < outages[0]!.stopping)
      assert.deepEqual(beforeFirstOutage.filter((outcome) => !succeeded(outcome)), [], 'failures before any outage')

      await withClient(database.url, (client) => load.assertDatabaseMatches(client))
    })
  })

  describe('3. a query that hangs', () => {
    let server: RunningApp
    const poolMax = 2
    before(async () => {
      server = await startApp({
        DATABASE_URL: database.url,
        RATE_LIMIT_MAX: '0',
        DATABASE_POOL_MAX: String(poolMax),
        DATABASE_STATEMENT_TIMEOUT_MS: '300',
        DATABASE_CONNECT_TIMEOUT_MS: '1000',
      })
    })
    after(() => server?.close())

    const burst = (count: number, method: string, path: (index: number) => string, json?: (index: number) => unknown) =>
      Promise.all(
        Array.from({ length: count }, (_, index) => timedRequest(server.url, method, method, path(index), json?.(index))),
      )

    const createUser = async (email: string) => {
      const created = await timedRequest(server.url, 'create', 'POST', '/users', { name: 'Locked', email })
      assert.equal(created.status, 201, created.body)
      return created.json as { id: number }
    }

    const waitingBackends = (client: pg.Client) =>
      client
        .query(`SELECT count(*) AS count FROM pg_stat_activity WHERE application_name = 'fullstack-app' AND wait_event_type = 'Lock'`)
        .then((result) => Number(result.rows[0].count))

    it('times out statements blocked by a table lock with 503, then serves again once the lock is gone', async () => {
      await createUser('table-lock@example.com')
      await withClient(database.url, async (locker) => {
        await locker.query('BEGIN')
        await locker.query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE')
        const blocked = await burst(poolMax * 3, 'GET', (index) => (index % 2 ? '/users' : '/users/1'))
        blocked.forEach(assertUnavailable)
        assert.equal(await withClient(database.url, waitingBackends), 0, 'statements still waiting on the lock')
        await locker.query('ROLLBACK')
      })
      const answers = await burst(poolMax * 5, 'GET', () => '/users?limit=1')
      assert.deepEqual(answers.map((answer) => answer.status), answers.map(() => 200))
    })

    it('times out a write blocked by a row lock, keeps reads of that row and writes of others going', async () => {
      const locked = await createUser('row-lock@example.com')
      const other = await createUser('row-free@example.com')
      await withClient(database.url, async (locker) => {
        await locker.query('BEGIN')
        await locker.query('SELECT * FROM users WHERE id = $1 FOR UPDATE', [locked.id])
        const writes = await burst(poolMax * 2, 'PATCH', () => `/users/${locked.id}`, (index) => ({ name: `Try ${index}` }))
        writes.forEach(assertUnavailable)
        assert.equal((await timedRequest(server.url, 'read', 'GET', `/users/${locked.id}`)).status, 200)
        assert.equal((await timedRequest(server.url, 'change', 'PATCH', `/users/${other.id}`, { name: 'Free' })).status, 200)
        assert.equal(await withClient(database.url, waitingBackends), 0, 'statements still waiting on the lock')
        await locker.query('ROLLBACK')
      })
      const changed = await timedRequest(server.url, 'change', 'PATCH', `/users/${locked.id}`, { name: 'Unlocked' })
      assert.equal(changed.status, 200, changed.body)
      const stored = await withClient(database.url, (client) => client.query('SELECT name FROM users WHERE id = $1', [locked.id]))
      assert.equal(stored.rows[0].name, 'Unlocked')
    })

    it('answers 503 when the server stops answering altogether, and recovers when it wakes up', async () => {
      await database.freeze()
      let frozen: Outcome[]
      try {
        frozen = await burst(poolMax * 2, 'GET', (index) => `/users?limit=${index + 1}`)
      } finally {
        await database.thaw()
      }
      // Every answer came while the server was still frozen: none waited for it to wake up.
      frozen.forEach(assertUnavailable)
      const answers = await burst(poolMax * 5, 'GET', () => '/users?limit=1')
      assert.deepEqual(answers.map((answer) => answer.status), answers.map(() => 200))
    })
  })
})
