import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { Agent, request as httpRequest } from 'node:http'
import { connect, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { openDatabase } from '../src/database/database.js'
import { migrate, migrationNames } from '../src/database/migrations.js'
import { createLogger } from '../src/telemetry/logger.js'
import { freshStore, type BackendStore } from './support/app.js'
import { timedRequest, type Outcome } from './support/load.js'
import { freePort, projectRoot, shell, startServerProcess, type ServerProcess } from './support/process.js'
import { createTestDatabase } from './support/postgres.js'
import { sharedRedis } from './support/redis.js'

const silent = createLogger('silent')

/** A request on a connection of its own, so that the cluster hands it to any of its workers. */
function onNewConnection(baseUrl: string, method: string, path: string, json?: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers = json === undefined ? {} : { 'content-type': 'application/json' }
    const sent = httpRequest(new URL(path, baseUrl), { method, headers, agent: false }, (answer) => {
      let body = ''
      answer.setEncoding('utf8')
      answer.on('data', (chunk: string) => (body += chunk))
      answer.on('end', () => resolve({ status: answer.statusCode!, body }))
    })
    sent.on('error', reject)
    sent.end(json === undefined ? undefined : JSON.stringify(json))
  })
}

/** A POST whose body takes `durationMs` to arrive: the server has surely accepted it before then. */
function slowCreate(baseUrl: string, email: string, durationMs: number): Promise<Response> {
  return fetch(`${baseUrl}/users`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: new ReadableStream({
      async start(controller) {
        controller.enqueue(new TextEncoder().encode(`{"name":"Slow","email":"${email.slice(0, 4)}`))
        await sleep(durationMs)
        controller.enqueue(new TextEncoder().encode(`${email.slice(4)}"}`))
        controller.close()
      },
    }),
    duplex: 'half',
  } as RequestInit)
}

interface Answer {
  status: number
  connectionClose: boolean
  body: string
}

/** One request on the agent's keep-alive connections; a failure is returned as its error code. */
function send(agent: Agent, baseUrl: string, method: string, path: string, json?: unknown): Promise<Answer | string> {
  return new Promise((resolve) => {
    const headers = json === undefined ? {} : { 'content-type': 'application/json' }
    const outgoing = httpRequest(new URL(path, baseUrl), { method, headers, agent }, (response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => (body += chunk))
      response.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
      response.on('end', () => resolve({ status: response.statusCode!, connectionClose: response.headers.connection === 'close', body }))
    })
    outgoing.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
    outgoing.end(json === undefined ? undefined : JSON.stringify(json))
  })
}

interface LoadResult {
  answers: Answer[]
  failures: string[]
  /** Emails whose POST got 201. */
  created: string[]
  connections: number
}

/**
 * `clients` loops of POST then GET over one keep-alive agent, each until its connection is refused;
 * `signal` runs once `signalAfter` answers came back.
 */
async function keepAliveLoad(server: ServerProcess, clients: number, signalAfter: number, signal: () => void): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: clients })
  const sockets = new Set<Socket>()
  agent.on('free', (socket: Socket) => sockets.add(socket))
  const result: LoadResult = { answers: [], failures: [], created: [], connections: 0 }
  const record = (outcome: Answer | string) => {
    if (typeof outcome === 'string') result.failures.push(outcome)
    else result.answers.push(outcome)
    if (result.answers.length === signalAfter) signal()
    return outcome
  }
  const client = async (index: number) => {
    for (let step = 0; ; step++) {
      const email = `keepalive-${index}-${step}@example.com`
      const created = record(await send(agent, server.url, 'POST', '/users', { name: 'Keep Alive', email }))
      if (typeof created === 'string') return
      if (created.status === 201) result.created.push(email)
      if (typeof record(await send(agent, server.url, 'GET', '/users?limit=5')) === 'string') return
    }
  }
  await Promise.all(Array.from({ length: clients }, (_, index) => client(index)))
  agent.destroy()
  result.connections = sockets.size
  return result
}

/** Once /readyz answers 503 after SIGTERM: four more readiness probes and a POST, each on a new connection. */
async function probeDuringDelay(baseUrl: string): Promise<{ ready: number[]; created: number }> {
  while ((await onNewConnection(baseUrl, 'GET', '/readyz')).status !== 503) await sleep(10)
  const ready: number[] = []
  for (let probe = 0; probe < 4; probe++) ready.push((await onNewConnection(baseUrl, 'GET', '/readyz')).status)
  const created = await onNewConnection(baseUrl, 'POST', '/users', { name: 'Late', email: 'during-delay@example.com' })
  return { ready, created: created.status }
}

async function storedEmails(url: string): Promise<Set<string>> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return new Set((await client.query<{ email: string }>('SELECT email FROM users')).rows.map((row) => row.email))
  } finally {
    await client.end()
  }
}

describe('migrations', () => {
  it('bring an empty PostgreSQL database to the users table, from two instances at once', async () => {
    const database = await createTestDatabase()
    const settings = { url: database.url, dataDir: '', poolMax: 2, connectTimeoutMs: 2000, statementTimeoutMs: 5000 }
    const first = await openDatabase(settings, silent)
    const second = await openDatabase(settings, silent)
    try {
      await Promise.all([migrate(first.pool, silent), migrate(second.pool, silent)])
      const applied = await first.pool.query('SELECT name FROM pgmigrations')
      const names = await migrationNames()
      assert.deepEqual(applied.rows.map((row) => row.name), names)
      assert.equal(names[0], '001_create-users')
      const columns = await first.pool.query(
        `SELECT column_name FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position`,
      )
      assert.deepEqual(columns.rows.map((row) => row.column_name), ['id', 'name', 'email', 'created_at', 'updated_at'])
      await migrate(first.pool, silent)
    } finally {
      await first.close()
      await second.close()
      await database.drop()
    }
  })

  it('run from `npm run migrate`', async () => {
    const database = await createTestDatabase()
    try {
      const run = spawnSync('npm', ['run', '--silent', 'migrate'], {
        cwd: projectRoot,
        env: { ...process.env, DATABASE_URL: database.url, LOG_LEVEL: 'silent' },
        encoding: 'utf8',
      })
      assert.equal(run.status, 0, run.stderr)
      const client = new pg.Client({ connectionString: database.url })
      await client.connect()
      const table = await client.query(`SELECT to_regclass('public.users') AS name`)
      await client.end()
      assert.equal(table.rows[0].name, 'users')
    } finally {
      await database.drop()
    }
  })
})

describe('the built server', () => {
  let store: BackendStore
  before(async () => {
    const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: projectRoot, encoding: 'utf8' })
    assert.equal(build.status, 0, build.stdout + build.stderr)
  })
  after(() => store?.dispose())

  it('answers the brief’s curl commands with the embedded database, then keeps the data across a restart', async () => {
    store = await freshStore('pglite')
    // The brief's commands name port 5000; a free port stands in for it, so a running `npm start` cannot interfere.
    const port = await freePort()
    const brief = (command: string) => shell(command.replaceAll('localhost:5000', `localhost:${port}`))
    let server = await startServerProcess(store.env, { port })
    const created = await brief(
      `curl -s -w '\\n%{http_code}' -X POST http://localhost:5000/users -H "Content-Type: application/json" -d '{"name":"Yassine","email":"yassine@example.com"}'`,
    )
    const [createdBody, createdStatus] = created.stdout.split('\n')
    assert.equal(createdStatus, '201')
    const user = JSON.parse(createdBody!)
    assert.equal(user.id, 1)

    const listed = await brief(`curl -s -w '\\n%{http_code}' http://localhost:5000/users`)
    assert.deepEqual(listed.stdout.split('\n'), [JSON.stringify([user]), '200'])
    const read = await brief(`curl -s -w '\\n%{http_code}' http://localhost:5000/users/1`)
    assert.deepEqual(read.stdout.split('\n'), [JSON.stringify(user), '200'])

    assert.equal(await server.stop('SIGTERM'), 0)
    server = await startServerProcess(store.env)
    const again = await fetch(`${server.url}/users/1`)
    assert.deepEqual(await again.json(), user)
    assert.equal(await server.stop('SIGINT'), 0)
  })

  it('finishes a request in flight on SIGTERM and exits 0', async () => {
    const database = await createTestDatabase()
    const server = await startServerProcess({ DATABASE_URL: database.url })
    try {
      const slow = slowCreate(server.url, 'slow@example.com', 300)
      await sleep(100)
      const exitCode = server.stop('SIGTERM')
      assert.equal((await slow).status, 201)
      assert.equal(await exitCode, 0)
    } finally {
      await database.drop()
    }
  })

  it('completes every accepted request when SIGTERM comes under load, then exits 0 within the grace period', async () => {
    const database = await createTestDatabase()
    const server = await startServerProcess({ DATABASE_URL: database.url, RATE_LIMIT_MAX: '0', SHUTDOWN_GRACE_MS: '5000' })
    try {
      const answersBeforeSignal = 30
      const sent: (Outcome & { email: string })[] = []
      let enoughAnswers!: () => void
      const loaded = new Promise<void>((resolve) => (enoughAnswers = resolve))
      const record = (outcome: Outcome & { email: string }) => {
        sent.push(outcome)
        if (sent.filter((each) => each.status !== 0).length === answersBeforeSignal) enoughAnswers()
      }
      const createUntilRefused = async (worker: number) => {
        for (let step = 0; ; step++) {
          const email = `load-${worker}-${step}@example.com`
          const outcome = await timedRequest(server.url, 'create', 'POST', '/users', { name: 'Load', email })
          record({ ...outcome, email })
          if (outcome.status === 0) return
          if (step % 2) await timedRequest(server.url, 'read', 'GET', `/users?limit=10`)
        }
      }
      const workers = Array.from({ length: 6 }, (_, worker) => createUntilRefused(worker))
      const slow = Array.from({ length: 4 }, (_, index) => slowCreate(server.url, `slow-${index}@example.com`, 800))
      // A client that sends half its headers and then nothing: it must not hold the shutdown up.
      const stalled = connect(Number(new URL(server.url).port), '127.0.0.1')
      stalled.on('error', () => {})
      stalled.write('GET /users HTTP/1.1\r\nHost: localhost\r\n')
      await loaded

      const signalledAt = Date.now()
      // close-with-grace exits 1 when the grace period ends first.
      const exitCode = await server.stop('SIGTERM')
      await Promise.all(workers)
      stalled.destroy()

      assert.equal(exitCode, 0, server.output())
      const answered = sent.filter((outcome) => outcome.status !== 0)
      assert.deepEqual(answered.filter((outcome) => outcome.status !== 201), [], 'answers other than 201')
      const refused = sent.filter((outcome) => outcome.status === 0)
      assert.ok(refused.every((outcome) => outcome.endedAt >= signalledAt), 'a connection failed before the signal')
      assert.deepEqual((await Promise.all(slow)).map((answer) => answer.status), [201, 201, 201, 201])

      const client = new pg.Client({ connectionString: database.url })
      await client.connect()
      const stored = new Set((await client.query('SELECT email FROM users')).rows.map((row) => row.email))
      await client.end()
      for (const { email } of answered) assert.ok(stored.has(email), `${email} got 201 but is not stored`)
      for (const { email } of refused) assert.ok(!stored.has(email), `${email} was stored but its request got no answer`)
    } finally {
      await database.drop()
    }
  })

  it('answers 413 to every body over BODY_LIMIT_BYTES sent by fetch, with a known length or streamed, never a reset', async () => {
    const database = await createTestDatabase()
    const server = await startServerProcess({ DATABASE_URL: database.url, RATE_LIMIT_MAX: '0' })
    const fiveMegabytes = Buffer.alloc(5 * 1024 * 1024, 'a')
    const upload = (body: RequestInit['body']) =>
      fetch(`${server.url}/users`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, duplex: 'half' } as RequestInit).then(
        async (response) => `${response.status} ${((await response.json()) as { type: string }).type}`,
        (error: Error & { cause?: { code?: string } }) => error.cause?.code ?? error.message,
      )
    const streamed = () =>
      new ReadableStream({
        start(controller) {
          for (let piece = 0; piece < 100; piece++) controller.enqueue(new Uint8Array(65 * 1024))
          controller.close()
        },
      })
    try {
      const outcomes: string[] = []
      for (let round = 0; round < 10; round++) outcomes.push(await upload(fiveMegabytes), await upload(streamed()))
      assert.deepEqual(outcomes, Array(20).fill('413 /problems/body-too-large'))
    } finally {
      await server.stop()
      await database.drop()
    }
  })

  it('does not log emails or bodies', async () => {
    const database = await createTestDatabase()
    const server = await startServerProcess({ DATABASE_URL: database.url })
    try {
      await fetch(`${server.url}/users`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'Private Person', email: 'secret@example.com' }),
      })
      await fetch(`${server.url}/users?email=secret@example.com`)
      await server.stop()
      const log = server.output()
      assert.match(log, /"reqId"/)
      assert.doesNotMatch(log, /secret@example\.com|Private Person/)
    } finally {
      await database.drop()
    }
  })

  it('runs WEB_CONCURRENCY workers sharing the port, the cache and the metrics; replaces a crashed one; stops on SIGTERM', async () => {
    const database = await createTestDatabase()
    const redis = await sharedRedis()
    const server = await startServerProcess({
      DATABASE_URL: database.url,
      REDIS_URL: redis.url,
      CACHE_PREFIX: redis.prefix,
      RATE_LIMIT_MAX: '0',
      WEB_CONCURRENCY: '2',
    })
    const workerPids = () => [
      ...new Set(
        server
          .output()
          .split('\n')
          .filter((line) => line.includes('Server listening'))
          .map((line) => JSON.parse(line).pid as number),
      ),
    ]
    const isRunning = (pid: number) => {
      try {
        return process.kill(pid, 0)
      } catch {
        return false
      }
    }
    try {
      // /readyz answers once one worker listens; the other may still be starting.
      for (let waited = 0; workerPids().length < 2; waited += 100) {
        assert.ok(waited < 10_000, `the second worker did not start:\n${server.output()}`)
        await sleep(100)
      }
      const [first, second] = workerPids() as [number, number]
      const created = await onNewConnection(server.url, 'POST', '/users', { name: 'Before', email: 'cluster@example.com' })
      assert.equal(created.status, 201)
      const id = (JSON.parse(created.body) as { id: number }).id
      const reads = 20
      for (let i = 0; i < reads; i++) assert.equal((await onNewConnection(server.url, 'GET', `/users/${id}`)).status, 200)
      // Every worker has the user cached by now; a change made through one is seen through all.
      assert.equal((await onNewConnection(server.url, 'PATCH', `/users/${id}`, { name: 'After' })).status, 200)
      for (let i = 0; i < 10; i++) {
        const read = await onNewConnection(server.url, 'GET', `/users/${id}`)
        assert.equal(JSON.parse(read.body).name, 'After')
      }
      const servedBy = new Set(
        server
          .output()
          .split('\n')
          .filter((line) => line.includes('request completed'))
          .map((line) => JSON.parse(line).pid as number),
      )
      assert.deepEqual([...servedBy].sort(), [first, second].sort(), 'both workers answered requests')

      const metrics = (await onNewConnection(server.url, 'GET', '/metrics')).body
      const readsCounted = /^http_request_duration_seconds_count\{method="GET",route="\/users\/:id",status_code="200"\} (\d+)$/m.exec(metrics)
      assert.equal(Number(readsCounted?.[1]), reads + 10, 'the metrics of both workers, summed')

      process.kill(first, 'SIGKILL')
      for (let waited = 0; workerPids().length < 3; waited += 100) {
        assert.ok(waited < 10_000, `no worker replaced the killed one:\n${server.output()}`)
        await sleep(100)
      }
      for (let i = 0; i < 10; i++) assert.equal((await onNewConnection(server.url, 'GET', `/users/${id}`)).status, 200)

      assert.equal(await server.stop('SIGTERM'), 0, server.output())
      assert.deepEqual(workerPids().filter(isRunning), [], 'every worker stopped with the primary')
    } finally {
      await server.stop('SIGKILL')
      await database.drop()
    }
  })

  for (const workers of [1, 2]) {
    const delayMs = workers === 1 ? 0 : 4000
    it(`answers every request that reached it under keep-alive load, then refuses connections (WEB_CONCURRENCY=${workers}, SHUTDOWN_DELAY_MS=${delayMs})`, async () => {
      const database = await createTestDatabase()
      const redis = await sharedRedis()
      const server = await startServerProcess({
        DATABASE_URL: database.url,
        REDIS_URL: redis.url,
        CACHE_PREFIX: redis.prefix,
        RATE_LIMIT_MAX: '0',
        WEB_CONCURRENCY: String(workers),
        SHUTDOWN_DELAY_MS: String(delayMs),
      })
      try {
        let exitCode: Promise<number | null> | undefined
        let duringDelay: Promise<{ ready: number[]; created: number }> | undefined
        const signal = () => {
          exitCode = server.stop('SIGTERM')
          if (delayMs > 0) duringDelay = probeDuringDelay(server.url)
        }
        const load = await keepAliveLoad(server, 50, 500, signal)
        assert.equal(await exitCode, 0, server.output())

        const failures = new Map<string, number>()
        for (const code of load.failures) failures.set(code, (failures.get(code) ?? 0) + 1)
        assert.deepEqual([...failures], [['ECONNREFUSED', 50]], 'each client ends on a refused connection, nothing else fails')
        assert.deepEqual(load.answers.filter((answer) => answer.status !== 200 && answer.status !== 201), [])
        assert.ok(load.answers.some((answer) => answer.connectionClose), 'answers after SIGTERM end their connection')
        const stored = await storedEmails(database.url)
        for (const email of load.created) assert.ok(stored.has(email), `${email} got 201 but is not stored`)
        const loggedAnswers = server
          .output()
          .split('\n')
          .filter((line) => line.includes('"request completed"') && /"url":"\/users(\?limit=5)?"/.test(line)).length
        assert.equal(loggedAnswers, load.answers.length + (duringDelay ? 1 : 0), 'every answer has its access-log line, the last ones too')
        if (duringDelay) {
          const { ready, created } = await duringDelay
          assert.deepEqual(ready, [503, 503, 503, 503], 'every worker is unready from SIGTERM on')
          assert.equal(created, 201, 'new connections are still served during SHUTDOWN_DELAY_MS')
        }
      } finally {
        await server.stop('SIGKILL')
        await database.drop()
      }
    })
  }

  it('refuses to start on a bad setting, naming the variable', () => {
    const run = spawnSync(process.execPath, ['dist/server.js'], {
      cwd: projectRoot,
      env: { PATH: process.env.PATH, PORT: 'not-a-port' },
      encoding: 'utf8',
    })
    assert.equal(run.status, 1)
    assert.match(run.stderr, /PORT/)
  })

  it('refuses to start in production without API_TOKEN, in one line, unless API_WRITES_OPEN=true', () => {
    const run = spawnSync(process.execPath, ['dist/server.js'], {
      cwd: projectRoot,
      env: { PATH: process.env.PATH, NODE_ENV: 'production', PORT: '0' },
      encoding: 'utf8',
    })
    assert.equal(run.status, 1)
    assert.equal(run.stdout, '')
    assert.match(run.stderr, /^[^\n]*API_TOKEN[^\n]*API_WRITES_OPEN=true[^\n]*\n$/)
  })
})
