import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startApp, type RunningApp } from './support/app.js'
import { assertProblem, request } from './support/http.js'
import { createTestDatabase, type TestDatabase } from './support/postgres.js'

/** The value of one sample line of a Prometheus text exposition, or undefined. */
function sample(exposition: string, series: string): number | undefined {
  const line = exposition.split('\n').find((candidate) => candidate.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

describe('metrics', () => {
  let database: TestDatabase
  const servers: RunningApp[] = []
  const start = async (env: NodeJS.ProcessEnv = {}) => {
    const server = await startApp({ DATABASE_URL: database.url, RATE_LIMIT_MAX: '0', ...env })
    servers.push(server)
    return server
  }
  before(async () => {
    database = await createTestDatabase()
  })
  after(async () => {
    for (const server of servers) await server.close()
    await database?.drop()
  })

  it('count requests by route and status, cache lookups, and expose the pool and the process', async () => {
    const { url } = await start()
    const created = await request(url, 'POST', '/users', { json: { name: 'Counted', email: 'counted@example.com' } })
    for (let i = 0; i < 3; i++) assert.equal((await request(url, 'GET', `/users/${created.body.id}`)).status, 200)
    assert.equal((await request(url, 'GET', '/users/999999')).status, 404)
    assert.equal((await request(url, 'GET', '/no/such/path/1')).status, 404)
    assert.equal((await request(url, 'GET', '/no/such/path/2')).status, 404)

    const answer = await request(url, 'GET', '/metrics')
    assert.equal(answer.status, 200)
    assert.match(answer.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
    const text = answer.text
    const count = (labels: string) => sample(text, `http_request_duration_seconds_count{${labels}}`)
    assert.equal(count('method="POST",route="/users",status_code="201"'), 1)
    assert.equal(count('method="GET",route="/users/:id",status_code="200"'), 3)
    assert.equal(count('method="GET",route="/users/:id",status_code="404"'), 1)
    assert.equal(count('method="GET",route="unmatched",status_code="404"'), 2)
    assert.doesNotMatch(text, /no\/such\/path/)

    // The first read of the user misses and fills, the next two hit; so does the 404's lookup miss.
    assert.equal(sample(text, 'cache_lookups_total{result="hit"}'), 2)
    assert.equal(sample(text, 'cache_lookups_total{result="miss"}'), 2)
    assert.equal(sample(text, 'cache_lookups_total{result="error"}'), 0)
    assert.equal(sample(text, 'cache_degraded'), 0)
    assert.equal(sample(text, 'db_pool_connections{state="in_use"}'), 0)
    assert.ok(sample(text, 'db_pool_connections{state="idle"}')! >= 1)
    assert.equal(sample(text, 'db_pool_waiting_requests'), 0)
    assert.ok(sample(text, 'process_resident_memory_bytes')! > 10_000_000)
    assert.ok(sample(text, 'nodejs_eventloop_lag_seconds')! >= 0)
  })

  it('can be turned off, and need the token when reads do', async () => {
    const off = await start({ METRICS_ENABLED: 'false' })
    assertProblem(await request(off.url, 'GET', '/metrics'), 404)

    const token = 'metrics-token-0123456789'
    const guarded = await start({ API_TOKEN: token, API_TOKEN_READS: 'true' })
    assertProblem(await request(guarded.url, 'GET', '/metrics'), 401)
    const allowed = await request(guarded.url, 'GET', '/metrics', { headers: { authorization: `Bearer ${token}` } })
    assert.equal(allowed.status, 200)
    assert.match(allowed.text, /^# HELP /m)
  })
})
