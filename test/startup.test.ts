/**
 * Issue 9, item 8: what the built server (`npm run build` first) says and does when its database
 * cannot be used at start, and how many connections an instance of several workers may open.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { request as httpRequest } from 'node:http'
import { describe, it } from 'node:test'
import pg from 'pg'
import { loadSettings, SettingsError } from '../src/config/settings.js'
import { freePort, projectRoot, startServerProcess } from './support/process.js'
import { createTestDatabase, serverUrl } from './support/postgres.js'

/** Runs `node dist/server.js` until it exits (killed after 30 s): its exit code and output. */
async function startServer(env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['dist/server.js'], {
    cwd: projectRoot,
    env: { PATH: process.env.PATH, NODE_ENV: 'production', API_WRITES_OPEN: 'true', LOG_LEVEL: 'info', PORT: String(await freePort()), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stderr.on('data', (chunk) => (output += chunk))
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const [code] = await once(child, 'exit')
  clearTimeout(killer)
  return { code: code as number | null, output }
}

/** Exit code 1 and one fatal JSON line that says where and what, with no password and no stack trace. */
function assertOneClearLine(result: { code: number | null; output: string }, ...expected: RegExp[]): void {
  assert.equal(result.code, 1, result.output)
  const lines = result.output.trim().split('\n')
  assert.equal(lines.length, 1, result.output)
  const line = JSON.parse(lines[0]!) as { level: number; msg: string }
  assert.equal(line.level, 60, 'logged as fatal')
  for (const pattern of expected) assert.match(line.msg, pattern)
  assert.doesNotMatch(result.output, /s3cret|\n\s+at |node_modules/)
}

describe('a database that cannot be used at start', () => {
  it('makes the server exit 1 with one line naming host, port, database and what failed', async () => {
    const port = await freePort()
    const result = await startServer({ DATABASE_URL: `postgres://users:s3cret@127.0.0.1:${port}/usersdb` })
    assertOneClearLine(result, new RegExp(`PostgreSQL at 127\\.0\\.0\\.1:${port}/usersdb as users`), /ECONNREFUSED/)
  })

  it('says so for a database that does not exist, and from the primary of several workers', async () => {
    const url = new URL(serverUrl)
    url.pathname = '/fullstack_missing_database'
    const result = await startServer({ DATABASE_URL: url.toString(), WEB_CONCURRENCY: '2', CACHE_ENABLED: 'false' })
    assertOneClearLine(result, /\/fullstack_missing_database/, /database "fullstack_missing_database" does not exist/)
  })
})

/** A PATCH on a connection of its own, so that the cluster may hand it to any worker. */
function patchOnNewConnection(baseUrl: string, path: string, json: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const sent = httpRequest(
      new URL(path, baseUrl),
      { method: 'PATCH', headers: { 'content-type': 'application/json' }, agent: false },
      (answer) => answer.resume().on('end', () => resolve(answer.statusCode!)),
    )
    sent.on('error', reject)
    sent.end(JSON.stringify(json))
  })
}

describe('DATABASE_POOL_MAX, the connections of the whole instance', () => {
  it('is shared among the workers, and refused when it cannot give each worker one', () => {
    const url = 'postgres://postgres@127.0.0.1:5432/usersdb'
    const settings = (env: NodeJS.ProcessEnv) => loadSettings({ DATABASE_URL: url, CACHE_ENABLED: 'false', ...env })
    assert.equal(settings({}).database.poolMax, 10)
    assert.equal(settings({ WEB_CONCURRENCY: '4' }).database.poolMax, 2)
    assert.equal(settings({ WEB_CONCURRENCY: '3', DATABASE_POOL_MAX: '20' }).database.poolMax, 6)
    // `auto` never takes more workers than there are connections.
    assert.equal(settings({ WEB_CONCURRENCY: 'auto', DATABASE_POOL_MAX: '1' }).workers, 1)
    assert.equal(settings({ WEB_CONCURRENCY: 'auto', DATABASE_POOL_MAX: '1' }).database.poolMax, 1)
    assert.throws(
      () => settings({ WEB_CONCURRENCY: '16' }),
      (error: Error) =>
        error instanceof SettingsError && /DATABASE_POOL_MAX=.*16 workers \(WEB_CONCURRENCY=16\)/.test(error.message),
    )
  })

  it('bounds what a running cluster opens, even with every connection of every worker in use', async () => {
    const database = await createTestDatabase()
    const budget = 4
    const server = await startServerProcess({
      DATABASE_URL: database.url,
      WEB_CONCURRENCY: '2',
      DATABASE_POOL_MAX: String(budget),
      DATABASE_STATEMENT_TIMEOUT_MS: '15000',
      DATABASE_CONNECT_TIMEOUT_MS: '15000',
      CACHE_ENABLED: 'false',
      RATE_LIMIT_MAX: '0',
    })
    const locker = new pg.Client({ connectionString: database.url })
    // Outside the locker's transaction, which would see one snapshot of pg_stat_activity throughout.
    const observer = new pg.Client({ connectionString: database.url })
    try {
      await observer.connect()
      // /readyz answers once one worker listens; the other may still be starting.
      const listening = () => server.output().split('\n').filter((line) => line.includes('Server listening')).length
      for (let waited = 0; listening() < 2; waited += 100) {
        assert.ok(waited < 20_000, `the second worker did not start:\n${server.output()}`)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      await locker.connect()
      const created = await fetch(`${server.url}/users`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'Locked', email: 'pool@example.com' }),
      })
      const { id } = (await created.json()) as { id: number }
      await locker.query('BEGIN')
      await locker.query('SELECT * FROM users WHERE id = $1 FOR UPDATE', [id])
      // Every PATCH waits for the row lock on a connection of its worker's pool, so each pool fills up.
      const patches = Array.from({ length: 12 }, (_, index) => patchOnNewConnection(server.url, `/users/${id}`, { name: `P${index}` }))
      const opened = async () =>
        Number(
          (
            await observer.query(
              `SELECT count(*) AS count FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'fullstack-app'`,
            )
          ).rows[0].count,
        )
      let waiting = 0
      for (let i = 0; i < 200 && waiting < budget; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50))
        waiting = Number(
          (await observer.query(`SELECT count(*) AS count FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`))
            .rows[0].count,
        )
      }
      // More would have opened by now if the pools could exceed the budget.
      await new Promise((resolve) => setTimeout(resolve, 500))
      const connections = await opened()
      await locker.query('ROLLBACK')
      assert.equal(waiting, budget, 'every connection of both pools waits on the lock')
      assert.equal(connections, budget, `${connections} connections open for a budget of ${budget}`)
      assert.deepEqual(new Set(await Promise.all(patches)), new Set([200]))
    } finally {
      await locker.end()
      await observer.end()
      await server.stop()
      await database.drop()
    }
  })
})
