import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import pg from 'pg'
import { startHaproxy, type LoadBalancer } from './support/haproxy.js'
import { createTestDatabase, type TestDatabase } from './support/postgres.js'
import { freePort, startServerProcess, type ServerProcess } from './support/process.js'
import { sharedRedis } from './support/redis.js'

// What the Kubernetes overlays run, as local processes: three API replicas of one worker each,
// sharing PostgreSQL and Redis, behind one address that spreads requests round robin and drops a
// replica whose /readyz fails.

interface User {
  id: number
  name: string
  email: string
}

interface Tally {
  requests: number
  failures: string[]
  stale: string[]
  created: number[]
  /** The last acknowledged version of each owned user. */
  acknowledged: Map<number, number>
}

const token = 'replicas-test-token-0123456789'
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const versionOf = (user: User) => Number(user.name.split(' v')[1])

/**
 * Writers each own a user: they PATCH its name to the next version, and once acknowledged read it
 * back; they also create users. Readers read every owned user, and must never see a version older
 * than the one acknowledged before their read started. Runs until `until` settles.
 */
async function load(url: string, users: User[], until: Promise<unknown>, tag: string): Promise<Tally> {
  const acknowledged = new Map(users.map((user) => [user.id, versionOf(user)]))
  const tally: Tally = { requests: 0, failures: [], stale: [], created: [], acknowledged }
  let done = false
  void until.finally(() => (done = true))
  const call = async (method: string, path: string, body?: unknown): Promise<User | undefined> => {
    tally.requests++
    try {
      const answer = await fetch(`${url}${path}`, {
        method,
        headers: body ? { 'content-type': 'application/json', authorization: `Bearer ${token}` } : {},
        body: body ? JSON.stringify(body) : undefined,
      })
      const text = await answer.text()
      if (answer.status >= 300) {
        tally.failures.push(`${method} ${path}: ${answer.status} ${text.slice(0, 200)}`)
        return undefined
      }
      return JSON.parse(text) as User
    } catch (error) {
      tally.failures.push(`${method} ${path}: ${(error as Error).message} ${String((error as Error).cause ?? '')}`)
      return undefined
    }
  }
  const read = async (user: User) => {
    const floor = acknowledged.get(user.id)!
    const seen = await call('GET', `/users/${user.id}`)
    if (seen && versionOf(seen) < floor) tally.stale.push(`user ${user.id}: read v${versionOf(seen)} after v${floor} was acknowledged`)
  }
  const writer = async (user: User, index: number) => {
    for (let version = versionOf(user) + 1, created = 0; !done; version++) {
      const changed = await call('PATCH', `/users/${user.id}`, { name: `writer ${index} v${version}` })
      if (!changed) continue
      acknowledged.set(user.id, Math.max(acknowledged.get(user.id)!, version))
      await read(user)
      if (version % 5 === 0) {
        const fresh = await call('POST', '/users', { name: `fresh v0`, email: `${tag}-${index}-${created++}@example.com` })
        if (fresh) tally.created.push(fresh.id)
      }
    }
  }
  const reader = async () => {
    while (!done) for (const user of users) await read(user)
  }
  await Promise.all([...users.map(writer), reader(), reader(), reader()])
  return tally
}

describe('three API replicas behind one address', () => {
  let database: TestDatabase
  let balancer: LoadBalancer
  let env: NodeJS.ProcessEnv
  const ports: number[] = []
  const replicas: ServerProcess[] = []
  const users: User[] = []

  before(async () => {
    database = await createTestDatabase()
    const redis = await sharedRedis()
    env = {
      DATABASE_URL: database.url,
      REDIS_URL: redis.url,
      CACHE_PREFIX: redis.prefix,
      WEB_CONCURRENCY: '1',
      LOG_LEVEL: 'warn',
      RATE_LIMIT_MAX: '0',
      API_TOKEN: token,
      // After SIGTERM, /readyz answers 503 at once while the replica keeps serving this long: the
      // balancer's health checks (every 100 to 200 ms) take it out first.
      SHUTDOWN_DELAY_MS: '1500',
      SHUTDOWN_GRACE_MS: '10000',
    }
    for (let i = 0; i < 3; i++) ports.push(await freePort())
    replicas.push(...(await Promise.all(ports.map((port) => startServerProcess(env, { port })))))
    balancer = await startHaproxy(ports)
    while ((await balancer.up()).length < 3) await pause(100)
    for (let i = 0; i < 4; i++) {
      const answer = await fetch(`${balancer.url}/users`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ name: `writer ${i} v0`, email: `owner-${i}@example.com` }),
      })
      assert.equal(answer.status, 201)
      users.push((await answer.json()) as User)
    }
  })

  after(async () => {
    await balancer?.stop()
    await Promise.all(replicas.map((replica) => replica.stop()))
    await database?.drop()
  })

  it('never serves a read older than an acknowledged write, whichever replica answers', async () => {
    const tally = await load(balancer.url, users, pause(2000), 'steady')
    assert.deepEqual(tally.failures, [])
    assert.deepEqual(tally.stale, [])
    assert.ok(tally.requests > 100, `only ${tally.requests} requests`)
    const direct = await Promise.all(replicas.map((replica) => fetch(`${replica.url}/users/${users[0]!.id}`).then((answer) => answer.json())))
    for (const user of direct) assert.deepEqual(user, direct[0], 'every replica answers the same')
  })

  it('restarts every replica in turn under load without a failed request or a lost write', async () => {
    const restarts = (async () => {
      for (let i = 0; i < replicas.length; i++) {
        await pause(300)
        const code = await replicas[i]!.stop('SIGTERM')
        assert.equal(code, 0, `replica ${i + 1} exits 0:\n${replicas[i]!.output()}`)
        replicas[i] = await startServerProcess(env, { port: ports[i] })
        while (!(await balancer.up()).includes(`api${i + 1}`)) await pause(100)
      }
      await pause(300)
    })()
    const tally = await load(balancer.url, users, restarts, 'rolling')
    await restarts
    assert.deepEqual(tally.failures, [])
    assert.deepEqual(tally.stale, [])
    assert.ok(tally.created.length > 0, 'writes happened during the restarts')

    const client = new pg.Client({ connectionString: database.url })
    await client.connect()
    try {
      const stored = await client.query<{ id: number }>('SELECT id FROM users WHERE id = ANY($1)', [tally.created])
      assert.equal(stored.rowCount, tally.created.length, 'every acknowledged create is stored')
      for (const user of users) {
        const row = await client.query<User>('SELECT name FROM users WHERE id = $1', [user.id])
        assert.equal(versionOf(row.rows[0]!), tally.acknowledged.get(user.id), `user ${user.id} keeps its last acknowledged update`)
        const seen = (await (await fetch(`${balancer.url}/users/${user.id}`)).json()) as User
        assert.equal(seen.name, row.rows[0]!.name, 'and every reader gets it')
      }
    } finally {
      await client.end()
    }
  })
})
