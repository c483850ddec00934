import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { createClient } from 'redis'
import { RedisCache } from '../src/cache/redis-cache.js'
import { createLogger } from '../src/telemetry/logger.js'
import { startApp, type RunningApp } from './support/app.js'
import { readWriteLoad } from './support/freshness.js'
import { request } from './support/http.js'
import { createTestDatabase, type TestDatabase } from './support/postgres.js'
import { ownRedis, type OwnRedis } from './support/redis.js'
import { logLines } from './support/log.js'


async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await condition()) return
    await sleep(50)
  }
  throw new Error(`gave up waiting: ${what}`)
}

describe('when Redis fails under load', () => {
  let database: TestDatabase
  let redis: OwnRedis
  const instances: RunningApp[] = []
  const logs = [logLines(), logLines()]
  const userIds: number[] = []
  const urls = () => instances.map((instance) => instance.url)
  const cacheStatus = async (instance: RunningApp) => (await request(instance.url, 'GET', '/readyz')).body.cache?.status

  before(async () => {
    database = await createTestDatabase()
    redis = await ownRedis()
    const env = { DATABASE_URL: database.url, REDIS_URL: redis.url, CACHE_TIMEOUT_MS: '200', LOG_LEVEL: 'info', RATE_LIMIT_MAX: '0' }
    for (const log of logs) instances.push(await startApp(env, { log: log.stream }))
    await until(async () => (await cacheStatus(instances[1]!)) === 'ok', 'the cache to connect')
    for (let i = 0; i < 3; i++) {
      const created = await request(instances[0]!.url, 'POST', '/users', { json: { name: 'v0', email: `fault${i}@example.com` } })
      userIds.push(created.body.id)
    }
  })
  after(async () => {
    for (const instance of instances) await instance.close()
    await redis?.kill()
    await database?.drop()
  })

  it('killed and restarted: no failed request, no stale read, and caching resumes by itself', async () => {
    const report = await readWriteLoad({
      urls: urls(),
      userIds,
      writesPerUser: 60,
      readers: 6,
      writePauseMs: 10,
      async meanwhile() {
        await sleep(200)
        await redis.kill()
        await sleep(300)
        const ready = await request(instances[0]!.url, 'GET', '/readyz')
        assert.equal(ready.status, 200, 'a degraded cache does not fail readiness')
        assert.equal(ready.body.cache.status, 'degraded')
        await sleep(300)
        await redis.start()
      },
    })
    assert.deepEqual(report.failures, [])
    assert.deepEqual(report.staleReads, [])
    assert.equal(report.writes, 180)

    for (const instance of instances) {
      await until(async () => {
        const hits = instance.cache.stats.hits
        await request(instance.url, 'GET', `/users/${userIds[0]}`)
        return instance.cache.stats.hits > hits && (await cacheStatus(instance)) === 'ok'
      }, 'reads to be served from Redis again')
    }
    for (const log of logs) {
      const degraded = log.lines.filter((line) => line.msg.startsWith('cache degraded'))
      assert.equal(degraded.length, 1, 'the outage is logged once, not per request')
      assert.equal(log.lines.filter((line) => line.msg === 'cache available again').length, 1)
    }
  })

  it('paused: requests do not wait for it, and no stale read follows', async () => {
    const [a, b] = instances as [RunningApp, RunningApp]
    for (const user of userIds) {
      await request(b.url, 'GET', `/users/${user}`)
      await request(b.url, 'GET', `/users/${user}`)
    }

    redis.pause()
    try {
      // Concurrent, so that invalidations queue behind one Redis does not answer.
      const writes = await Promise.all(
        userIds.map((user) => request(a.url, 'PATCH', `/users/${user}`, { json: { name: 'while-paused' } })),
      )
      assert.deepEqual(writes.map((write) => write.status), userIds.map(() => 200))
      for (const user of userIds) {
        const read = await request(b.url, 'GET', `/users/${user}`)
        assert.equal(read.status, 200)
        assert.equal(read.body.name, 'while-paused')
      }
    } finally {
      redis.resume()
    }
    const everyRead = async () => {
      for (const instance of [a, b]) {
        for (const user of userIds) assert.equal((await request(instance.url, 'GET', `/users/${user}`)).body.name, 'while-paused')
      }
    }
    await everyRead()
    await until(async () => (await cacheStatus(a)) === 'ok', 'the writer to move to a new epoch')
    await everyRead()
  })
})

/** Two instances sharing a redis-server of the test's own, started with `redisArgs`. */
async function twoInstancesOn(redisArgs: string[]) {
  const database = await createTestDatabase()
  const redis = await ownRedis(redisArgs)
  const client = createClient({ url: redis.url })
  client.on('error', () => {})
  await client.connect()
  const prefix = 'lost:'
  // An epoch as on a Redis that has served for a while: a new one settles first, caching nothing.
  await client.set(`${prefix}epoch`, '1')
  const logs = [logLines(), logLines()]
  const env = { DATABASE_URL: database.url, REDIS_URL: redis.url, CACHE_PREFIX: prefix, LOG_LEVEL: 'info', RATE_LIMIT_MAX: '0' }
  const a = await startApp(env, { log: logs[0]!.stream })
  const b = await startApp(env, { log: logs[1]!.stream })
  let users = 0
  /** Long emails make each cached user take more of Redis's memory. */
  const createUsers = async (count: number, name = 'v0', emailLength = 20) => {
    const ids: number[] = []
    await inBatches(Array.from({ length: count }, () => ++users), async (n) => {
      const created = await request(a.url, 'POST', '/users', { json: { name, email: `${String(n).padStart(emailLength - 12, 'u')}@example.com` } })
      assert.equal(created.status, 201, created.text)
      ids.push(created.body.id)
    })
    return ids
  }
  return {
    a,
    b,
    client,
    prefix,
    logs,
    createUsers,
    /** Deletes the generation keys of scope in every epoch, as eviction or an operator may; returns how many. */
    async forget(scope: string) {
      const keys = await client.keys(`${prefix}*:${scope}:gen`)
      return keys.length > 0 ? client.del(keys) : 0
    },
    async close() {
      await a.close()
      await b.close()
      client.destroy()
      await redis.kill()
      await database.drop()
    },
  }
}

/** Runs `work` on every item, 16 at a time. */
async function inBatches<T>(items: T[], work: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += 16) await Promise.all(items.slice(i, i + 16).map(work))
}

/** Reads path twice through the instance and checks that the second read came from Redis. */
async function cachedRead(instance: RunningApp, path: string) {
  await request(instance.url, 'GET', path)
  const hits = instance.cache.stats.hits
  const answer = await request(instance.url, 'GET', path)
  assert.equal(instance.cache.stats.hits, hits + 1, `${path} was not served from the cache`)
  return answer
}

describe('when Redis loses keys', () => {
  let stack: Awaited<ReturnType<typeof twoInstancesOn>>
  before(async () => {
    stack = await twoInstancesOn([])
  })
  after(async () => {
    await stack?.close()
  })

  it('a deleted generation never brings back a user cached before a write', async () => {
    const { a, b } = stack
    const [id] = await stack.createUsers(1, 'old')
    const path = `/users/${id}`
    await cachedRead(b, path)
    assert.equal((await request(a.url, 'PATCH', path, { json: { name: 'new' } })).status, 200)
    assert.equal((await cachedRead(b, path)).body.name, 'new')
    assert.equal(await stack.forget(`user:${id}`), 1)
    assert.equal((await request(b.url, 'GET', path)).body.name, 'new')
  })

  it('a deleted generation never brings back a page cached before a write', async () => {
    const { b } = stack
    const page = '/users?limit=1000'
    await stack.forget('users')
    const before = (await cachedRead(b, page)).body as { id: number }[]
    const [added] = await stack.createUsers(1, 'added')
    const listed = async () => ((await request(b.url, 'GET', page)).body as { id: number }[]).map((user) => user.id)
    assert.deepEqual(await listed(), [...before.map((user) => user.id), added])
    assert.equal(await stack.forget('users'), 1)
    assert.deepEqual(await listed(), [...before.map((user) => user.id), added])
  })

  it('keys deleted at random and FLUSHDB under load: no stale read', async () => {
    const { a, b, client, prefix } = stack
    const userIds = await stack.createUsers(3)
    for (const instance of [a, b]) {
      for (const id of userIds) await cachedRead(instance, `/users/${id}`)
    }
    let deletions = 0
    const report = await readWriteLoad({
      urls: [a.url, b.url],
      userIds,
      writesPerUser: 40,
      readers: 8,
      writePauseMs: 10,
      async meanwhile() {
        for (let round = 0; round < 40; round++) {
          await sleep(15)
          const keys = (await client.keys(`${prefix}*`)).filter((key) => key !== `${prefix}epoch` && Math.random() < 0.3)
          if (keys.length > 0) deletions += await client.del(keys)
        }
        await client.flushDb()
      },
    })
    assert.deepEqual(report.failures, [])
    assert.deepEqual(report.staleReads, [])
    assert.equal(report.writes, 120)
    assert.ok(deletions > 0, 'no key was deleted')
  })
})

describe('when Redis evicts under memory pressure (allkeys-lfu)', () => {
  let stack: Awaited<ReturnType<typeof twoInstancesOn>>
  before(async () => {
    stack = await twoInstancesOn(['--maxmemory-policy', 'allkeys-lfu'])
  })
  after(async () => {
    await stack?.close()
  })

  it('many users written and read back: none is stale', async () => {
    const { a, b, client } = stack
    const userIds = await stack.createUsers(250, 'v0', 200)
    await inBatches(userIds, async (id) => {
      await request(b.url, 'GET', `/users/${id}`)
      await request(a.url, 'GET', `/users/${id}`)
    })
    // Little room above what the cached users take: the writes and the reads after them make Redis evict.
    const used = Number(/used_memory:(\d+)/.exec(String(await client.info('memory')))?.[1])
    await client.configSet('maxmemory', String(used + 30_000))
    await inBatches(userIds, async (id) => {
      assert.equal((await request(a.url, 'PATCH', `/users/${id}`, { json: { name: 'v1' } })).status, 200)
    })
    const stale: number[] = []
    for (const instance of [b, a, b]) {
      await inBatches(userIds, async (id) => {
        const read = await request(instance.url, 'GET', `/users/${id}`)
        assert.equal(read.status, 200, read.text)
        if (read.body.name !== 'v1') stale.push(id)
      })
    }
    const evicted = Number(/evicted_keys:(\d+)/.exec(String(await client.info('stats')))?.[1])
    assert.ok(evicted > 0, 'Redis evicted nothing: the test puts no pressure on it')
    assert.deepEqual(stale, [])
  })
})

describe('when Redis is full (maxmemory reached, noeviction)', () => {
  let stack: Awaited<ReturnType<typeof twoInstancesOn>>
  before(async () => {
    stack = await twoInstancesOn(['--maxmemory-policy', 'noeviction'])
  })
  after(async () => {
    await stack?.close()
  })

  const usedMemory = async () => Number(/used_memory:(\d+)/.exec(String(await stack.client.info('memory')))?.[1])

  /**
   * Fills Redis with keys of its own until it refuses a write, then keeps it over the limit by a
   * margin, so that the little the cache frees (or its clients' buffers) does not make room again.
   */
  async function fillRedis() {
    const { client } = stack
    await client.configSet('maxmemory', String((await usedMemory()) + 100_000))
    const filler = 'x'.repeat(10_000)
    for (let i = 0; ; i++) {
      try {
        await client.set(`filler:${i}`, filler)
      } catch (error) {
        assert.match((error as Error).message, /^OOM/)
        break
      }
    }
    await client.configSet('maxmemory', String((await usedMemory()) - 50_000))
  }

  it('a write on one instance is seen at once on the other, and every request is answered', async () => {
    const { a, b, logs } = stack
    const userIds = await stack.createUsers(3)
    for (const instance of [a, b]) {
      for (const id of userIds) await cachedRead(instance, `/users/${id}`)
      await cachedRead(instance, '/users?limit=1000')
    }
    await fillRedis()

    const path = `/users/${userIds[0]}`
    assert.equal((await request(a.url, 'PATCH', path, { json: { name: 'written-while-full' } })).status, 200)
    for (const instance of [b, a]) {
      assert.equal((await request(instance.url, 'GET', path)).body.name, 'written-while-full')
      const listed = (await request(instance.url, 'GET', '/users?limit=1000')).body as { id: number; name: string }[]
      assert.equal(listed.find((user) => user.id === userIds[0])?.name, 'written-while-full')
    }
    assert.ok(
      logs.some((log) => log.lines.some((line) => line.msg.startsWith('cache: Redis is full'))),
      'no instance said that Redis is full',
    )

    const report = await readWriteLoad({ urls: [a.url, b.url], userIds, writesPerUser: 20, readers: 6, writePauseMs: 5 })
    assert.deepEqual(report.failures, [])
    assert.deepEqual(report.staleReads, [])
    assert.equal(report.writes, 60)
    for (const instance of [a, b]) {
      assert.equal((await request(instance.url, 'GET', '/readyz')).status, 200)
    }
  })
})

describe('the Redis settings the cache relies on', () => {
  /** The one line a cache logs about the settings of a redis-server started with `args`. */
  async function settingsLine(args: string[]) {
    const redis = await ownRedis(args)
    const log = logLines()
    const cache = new RedisCache({ url: redis.url, prefix: 'settings:', ttlSeconds: 60, timeoutMs: 500 }, createLogger('info', log.stream))
    try {
      cache.start()
      await until(async () => log.lines.some((line) => line.msg.startsWith('cache: Redis configuration')), 'the settings line')
      return log.lines.filter((line) => line.msg.startsWith('cache: Redis configuration')) as {
        level: number
        msg: string
        redis: { persistence: string; maxmemoryPolicy: string }
        unsupported?: string[]
      }[]
    } finally {
      await cache.close()
      await redis.kill()
    }
  }

  it('says in one line at start whether they are supported, also when CONFIG is refused', async () => {
    const supported = await settingsLine(['--maxmemory-policy', 'allkeys-lfu'])
    assert.equal(supported.length, 1)
    assert.equal(supported[0]!.msg, 'cache: Redis configuration supported')
    assert.deepEqual([supported[0]!.redis.persistence, supported[0]!.redis.maxmemoryPolicy], ['none', 'allkeys-lfu'])

    const snapshots = await settingsLine(['--save', '60 1'])
    assert.equal(snapshots.length, 1)
    assert.equal(snapshots[0]!.level, 40)
    assert.match(snapshots[0]!.unsupported!.join(), /persistence RDB snapshots/)

    const managed = await settingsLine(['--save', '60 1', '--rename-command', 'CONFIG', ''])
    assert.equal(managed.length, 1)
    assert.equal(managed[0]!.redis.persistence, 'unknown (CONFIG GET refused)')
  })
})
