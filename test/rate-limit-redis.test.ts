/**
 * Rate-limit counters in Redis (REDIS_URL set): one budget per client across instances, and a
 * limiter that fails open, at once, while Redis is away, stalled or was never there.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { createClient } from 'redis'
import { redisRateLimitCounters, type RedisRateLimitCounters } from '../src/http/rate-limit-store.js'
import { createLogger } from '../src/telemetry/logger.js'
import { startApp, type RunningApp } from './support/app.js'
import { assertProblem, request, type Answer } from './support/http.js'
import { createTestDatabase, type TestDatabase } from './support/postgres.js'
import { freePort } from './support/process.js'
import { ownRedis, scriptCalls, type OwnRedis } from './support/redis.js'
import { logLines } from './support/log.js'

let database: TestDatabase
let redis: OwnRedis
before(async () => {
  database = await createTestDatabase()
  redis = await ownRedis()
})
after(async () => {
  await redis?.kill()
  await database?.drop()
})

const timeoutMs = 200
const newPrefix = () => `rl-${randomBytes(4).toString('hex')}:`

const said = (lines: { msg: string }[], words: RegExp) => lines.filter((line) => words.test(line.msg)).length

/** Instances started with the same settings (one Redis, one prefix), each with its log; all closed after `body`. */
async function withInstances(
  count: number,
  env: NodeJS.ProcessEnv,
  body: (instances: RunningApp[], logs: ReturnType<typeof logLines>[]) => Promise<void>,
): Promise<void> {
  const settings = { DATABASE_URL: database.url, REDIS_URL: redis.url, CACHE_TIMEOUT_MS: String(timeoutMs), LOG_LEVEL: 'info', ...env }
  const logs = Array.from({ length: count }, logLines)
  const instances: RunningApp[] = []
  try {
    for (const log of logs) instances.push(await startApp(settings, { log: log.stream }))
    await body(instances, logs)
  } finally {
    for (const instance of instances) await instance.close()
  }
}

const connectRedis = () => createClient({ url: redis.url }).connect()

/** One command on a connection of the test's own. */
async function redisCommand<T>(run: (client: Awaited<ReturnType<typeof connectRedis>>) => Promise<T>): Promise<T> {
  const client = await connectRedis()
  try {
    return await run(client)
  } finally {
    client.destroy()
  }
}

function assertLimited(answer: Answer, windowSeconds: number) {
  assert.equal(assertProblem(answer, 429).type, '/problems/rate-limited')
  const retryAfter = Number(answer.headers.get('retry-after'))
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= windowSeconds, `Retry-After: ${retryAfter}`)
  return retryAfter
}

/** Sends `GET /users` until one is limited; false if none is within `tries`. */
async function untilLimited(url: string, tries = 100): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if ((await request(url, 'GET', '/users')).status === 429) return true
    await sleep(50)
  }
  return false
}

describe('rate limiting with REDIS_URL', () => {
  it('shares one budget per client between instances, even with the response cache off; health checks exempt', () => {
    const prefix = newPrefix()
    return withInstances(2, { RATE_LIMIT_MAX: '5', RATE_LIMIT_WINDOW: '1m', CACHE_PREFIX: prefix, CACHE_ENABLED: 'false' }, async (instances) => {
      const answers = []
      for (let i = 0; i < 8; i++) answers.push(await request(instances[i % 2]!.url, 'GET', '/users'))
      assert.deepEqual(answers.map((answer) => answer.status), [200, 200, 200, 200, 200, 429, 429, 429], 'five requests in all, not five per instance')
      assert.deepEqual(answers.slice(0, 5).map((answer) => answer.headers.get('x-ratelimit-remaining')), ['4', '3', '2', '1', '0'])
      for (const limited of answers.slice(5)) assertLimited(limited, 60)
      for (const instance of instances) {
        for (const probe of ['/healthz', '/readyz']) assert.equal((await request(instance.url, 'GET', probe)).status, 200, probe)
      }
      const [count, ttl] = await redisCommand((client) => Promise.all([client.get(`${prefix}rate:127.0.0.1`), client.pTTL(`${prefix}rate:127.0.0.1`)]))
      assert.equal(count, '8', 'one counter under CACHE_PREFIX + rate:, health checks not counted')
      assert.ok(ttl > 50_000 && ttl <= 60_000, `PTTL ${ttl}`)
    })
  })

  it('lets a client in again once its window has passed', () =>
    withInstances(2, { RATE_LIMIT_MAX: '2', RATE_LIMIT_WINDOW: '1s', CACHE_PREFIX: newPrefix() }, async ([a, b]) => {
      assert.equal((await request(a!.url, 'GET', '/users')).status, 200)
      assert.equal((await request(b!.url, 'GET', '/users')).status, 200)
      const retryAfter = assertLimited(await request(a!.url, 'GET', '/users'), 1)
      assertLimited(await request(b!.url, 'GET', '/users'), 1)
      await sleep(retryAfter * 1000 + 100)
      const again = await request(b!.url, 'GET', '/users')
      assert.equal(again.status, 200)
      assert.equal(again.headers.get('x-ratelimit-remaining'), '1', 'a new window, counted from zero')
    }))

  it('lets every request through at once when Redis was never reachable, and says so once', async () => {
    const closedPort = await freePort()
    const log = logLines()
    const server = await startApp(
      { DATABASE_URL: database.url, REDIS_URL: `redis://127.0.0.1:${closedPort}`, CACHE_ENABLED: 'false', LOG_LEVEL: 'info', RATE_LIMIT_MAX: '2', CACHE_TIMEOUT_MS: String(timeoutMs) },
      { log: log.stream },
    )
    try {
      const startedAt = Date.now()
      const answers = []
      for (let i = 0; i < 10; i++) answers.push(await request(server.url, 'GET', '/users'))
      answers.push(...(await Promise.all(Array.from({ length: 20 }, () => request(server.url, 'GET', '/users')))))
      assert.deepEqual(answers.map((answer) => answer.status), answers.map(() => 200), 'not limited, not failed')
      assert.ok(Date.now() - startedAt < 1500, `no request waited on Redis (${Date.now() - startedAt} ms)`)
    } finally {
      const closing = Date.now()
      await server.close()
      assert.ok(Date.now() - closing < 1500, 'closing does not wait on Redis either')
    }
    assert.equal(said(log.lines, /rate-limit counters unavailable/), 1, 'the degradation is logged once, not per request')
  })

  it('fails open while Redis is killed, and counts again once it is back', () =>
    withInstances(2, { RATE_LIMIT_MAX: '5', RATE_LIMIT_WINDOW: '1m', CACHE_PREFIX: newPrefix() }, async (instances, logs) => {
      for (let i = 0; i < 5; i++) assert.equal((await request(instances[i % 2]!.url, 'GET', '/users')).status, 200)
      assertLimited(await request(instances[0]!.url, 'GET', '/users'), 60)

      await redis.kill()
      try {
        const startedAt = Date.now()
        const during = await Promise.all(Array.from({ length: 30 }, (_, i) => request(instances[i % 2]!.url, 'GET', '/users')))
        assert.deepEqual(during.map((answer) => answer.status), during.map(() => 200), 'not limited, not failed')
        assert.ok(Date.now() - startedAt < 1500, `no request waited on Redis (${Date.now() - startedAt} ms)`)
      } finally {
        await redis.start()
      }
      // The restarted Redis starts with no counters: five more pass, then both instances limit again.
      assert.ok(await untilLimited(instances[0]!.url), 'counting resumes once Redis is back')
      assertLimited(await request(instances[1]!.url, 'GET', '/users'), 60)
      for (const log of logs) {
        assert.equal(said(log.lines, /rate-limit counters unavailable/), 1)
        assert.equal(said(log.lines, /rate-limit counters available again/), 1)
      }
    }))

  it('does not hold requests up while Redis is stalled: one waits the deadline, the rest pass at once', () =>
    withInstances(1, { RATE_LIMIT_MAX: '3', RATE_LIMIT_WINDOW: '1m', CACHE_PREFIX: newPrefix(), CACHE_ENABLED: 'false' }, async ([server]) => {
      assert.equal((await request(server!.url, 'GET', '/users')).status, 200)
      redis.pause()
      try {
        const startedAt = Date.now()
        for (let i = 0; i < 20; i++) assert.equal((await request(server!.url, 'GET', '/users')).status, 200)
        const took = Date.now() - startedAt
        assert.ok(took < timeoutMs + 800, `20 requests took ${took} ms, not 20 × ${timeoutMs} ms`)
      } finally {
        redis.resume()
      }
      assert.ok(await untilLimited(server!.url), 'counting resumes once Redis answers again')
    }))
})

describe('the Redis store, as @fastify/rate-limit calls it', () => {
  let counters: RedisRateLimitCounters
  let prefix: string
  before(async () => {
    prefix = newPrefix()
    counters = redisRateLimitCounters(redis.url, prefix, 1000, createLogger('silent'))
    const store = new counters.Store({})
    for (let i = 0; i < 100 && !(await call(store, 'incr', 'warm-up', 1000, 1).then(() => true, () => false)); i++) await sleep(20)
  })
  after(() => counters?.close())

  type Store = InstanceType<RedisRateLimitCounters['Store']>
  type Counted = { current: number; ttl: number }
  const call = (store: Store, method: 'incr' | 'read', key: string, timeWindow: number, max: number) =>
    new Promise<Counted>((resolve, reject) => {
      const callback = (error: Error | null, result?: Counted) => (error ? reject(error) : resolve(result!))
      const run = (store as unknown as Record<typeof method, (...args: unknown[]) => void>)[method]
      run.call(store, key, callback, timeWindow, max)
    })
  const pttl = (key: string) => redisCommand((client) => client.pTTL(`${prefix}${key}`))

  it('counts a fixed window: the first request sets it, later ones see what is left of it', async () => {
    const store = new counters.Store({})
    const first = await call(store, 'incr', 'fixed', 10_000, 2)
    assert.deepEqual(first, { current: 1, ttl: 10_000 })
    await sleep(30)
    for (const expected of [2, 3, 4]) {
      const { current, ttl } = await call(store, 'incr', 'fixed', 10_000, 2)
      assert.equal(current, expected)
      assert.ok(ttl < 10_000 && ttl > 9_000, `ttl ${ttl}`)
    }
    assert.deepEqual(await call(store, 'read', 'fixed', 10_000, 2).then((r) => r.current), 4, 'read does not count')
    assert.deepEqual(await call(store, 'read', 'nobody', 10_000, 2), { current: 0, ttl: 0 })
  })

  it('restarts the window at each request past max with continueExceeding', async () => {
    const store = new counters.Store({ continueExceeding: true } as object)
    assert.deepEqual(await call(store, 'incr', 'continue', 10_000, 2), { current: 1, ttl: 10_000 })
    await sleep(50)
    assert.ok((await call(store, 'incr', 'continue', 10_000, 2)).ttl < 10_000, 'within max: what is left')
    await sleep(500)
    assert.deepEqual(await call(store, 'incr', 'continue', 10_000, 2), { current: 3, ttl: 10_000 }, 'past max: a new window')
    // 9,500 ms or less had the window not restarted; the margin is for a busy machine.
    const left = await pttl('continue')
    assert.ok(left > 9_600, `PTTL ${left}`)
  })

  it('doubles the window at each request past max with exponentialBackoff, up to 2^53 - 1 ms', async () => {
    const store = new counters.Store({ exponentialBackoff: true } as object)
    const ttls = []
    for (let i = 0; i < 4; i++) ttls.push((await call(store, 'incr', 'backoff', 1000, 1)).ttl)
    assert.deepEqual(ttls, [1000, 1000, 2000, 4000])
    const left = await pttl('backoff')
    assert.ok(left > 3_000, `PTTL ${left}: the fourth request's 4 s, not the third's 2 s`)

    const huge = 2 ** 50
    const hugeTtls = []
    for (let i = 0; i < 5; i++) hugeTtls.push((await call(store, 'incr', 'huge', huge, 1)).ttl)
    assert.deepEqual(hugeTtls.slice(2, 4), [2 ** 51, 2 ** 52], 'PEXPIRE takes them as integers')
    // node-redis reads integers near 2^53 one off: the script returns 2^53 - 1.
    assert.ok(Math.abs(hugeTtls[4]! - (2 ** 53 - 1)) <= 1, `capped: ${hugeTtls[4]}`)
    const hugeLeft = await pttl('huge')
    assert.ok(hugeLeft > 2 ** 53 - 10_000, `PTTL ${hugeLeft}`)
  })

  it('counts concurrent requests for one key with one command, each told what counting it alone would tell', async () => {
    const store = new counters.Store({})
    const before = await scriptCalls(redis.url)
    const counted = await Promise.all(Array.from({ length: 50 }, () => call(store, 'incr', 'together', 10_000, 20)))
    assert.equal((await scriptCalls(redis.url)) - before, 2, 'the first request alone, the 49 that came while it was counted together')
    assert.deepEqual(counted.map((result) => result.current), Array.from({ length: 50 }, (_, i) => i + 1), 'in order, none twice')
    assert.deepEqual(counted[0], { current: 1, ttl: 10_000 })
    for (const { ttl } of counted) assert.ok(ttl <= 10_000 && ttl > 9_000, `ttl ${ttl}`)
    assert.equal(await redisCommand((client) => client.get(`${prefix}together`)), '50')

    const backoff = new counters.Store({ exponentialBackoff: true } as object)
    const doubled = await Promise.all(Array.from({ length: 6 }, () => call(backoff, 'incr', 'together-backoff', 1000, 2)))
    const [first, ...rest] = doubled.map((result) => result.ttl)
    assert.equal(first, 1000, 'the first request starts the window')
    // Within the limit, what is left of the window (a millisecond may have passed); past it, doubled.
    for (const ttl of rest.slice(0, 2)) assert.ok(ttl <= 1000 && ttl > 500, `ttl ${ttl}`)
    assert.deepEqual(rest.slice(2), [2000, 4000, 8000])
    const left = await pttl('together-backoff')
    assert.ok(left > 6_000, `PTTL ${left}: the expiry the last request sets (8 s), not an earlier one's`)

    const continuing = new counters.Store({ continueExceeding: true } as object)
    await call(continuing, 'incr', 'together-continue', 10_000, 1)
    await sleep(500)
    const restarted = await Promise.all(Array.from({ length: 3 }, () => call(continuing, 'incr', 'together-continue', 10_000, 1)))
    assert.deepEqual(restarted.map((result) => result.ttl), [10_000, 10_000, 10_000])
    const continuedLeft = await pttl('together-continue')
    assert.ok(continuedLeft > 9_600, `PTTL ${continuedLeft}: the window restarted`)
  })

  it('gives a route with its own limits a namespace of its own', async () => {
    const store = new counters.Store({})
    const child = store.child({ routeInfo: { method: 'GET', url: '/users/:id' } } as never)
    assert.equal((await call(store, 'incr', '10.0.0.1', 10_000, 5)).current, 1)
    assert.equal((await call(child, 'incr', '10.0.0.1', 10_000, 5)).current, 1)
    assert.equal((await call(child, 'incr', '10.0.0.1', 10_000, 5)).current, 2)
    assert.equal(await redisCommand((client) => client.get(`${prefix}GET/users/:id-10.0.0.1`)), '2')
  })
})
