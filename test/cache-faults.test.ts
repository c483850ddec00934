import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { startApp, type RunningApp } from './support/app.js'
import { readWriteLoad } from './support/freshness.js'
import { request } from './support/http.js'
import { createTestDatabase, type TestDatabase } from './support/postgres.js'
import { ownRedis, type OwnRedis } from './support/redis.js'

/** Collects an instance's log lines. */
function logLines() {
  const lines: { msg: string }[] = []
  return { lines, stream: { write: (line: string) => void lines.push(JSON.parse(line)) } }
}

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
    const user = userIds[1]!
    await request(b.url, 'GET', `/users/${user}`)
    await request(b.url, 'GET', `/users/${user}`)

    redis.pause()
    try {
      const write = await request(a.url, 'PATCH', `/users/${user}`, { json: { name: 'while-paused' } })
      const read = await request(b.url, 'GET', `/users/${user}`)
      assert.equal(write.status, 200)
      assert.equal(read.status, 200)
      assert.equal(read.body.name, 'while-paused')
    } finally {
      redis.resume()
    }
    for (const instance of [a, b]) {
      assert.equal((await request(instance.url, 'GET', `/users/${user}`)).body.name, 'while-paused')
    }
    await until(async () => (await cacheStatus(a)) === 'ok', 'the writer to move to a new epoch')
    for (const instance of [a, b]) {
      assert.equal((await request(instance.url, 'GET', `/users/${user}`)).body.name, 'while-paused')
    }
  })
})
