import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createClient } from 'redis'
import { MemoryCache } from '../src/cache/memory-cache.js'
import { RedisCache } from '../src/cache/redis-cache.js'
import type { CachedValue, ResponseCache } from '../src/cache/response-cache.js'
import { createLogger } from '../src/telemetry/logger.js'
import { startApp, type RunningApp } from './support/app.js'
import { readWriteLoad } from './support/freshness.js'
import { request } from './support/http.js'
import { NaiveRedisCache, withSlowFills } from './support/naive-cache.js'
import { createTestDatabase, type TestDatabase } from './support/postgres.js'
import { scriptCalls, sharedRedis, sharedRedisUrl } from './support/redis.js'

const silent = createLogger('silent')

async function redisCache(url: string, prefix: string): Promise<RedisCache> {
  const cache = new RedisCache({ url, prefix, ttlSeconds: 60, timeoutMs: 500 }, silent)
  cache.start()
  for (let i = 0; cache.health() !== 'ok'; i++) {
    if (i > 100) throw new Error(`cache did not connect to ${url}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return cache
}

/** A reader misses, loads "old", a write is acknowledged, then the reader stores what it loaded. */
async function readerRacingAWrite(cache: ResponseCache): Promise<CachedValue | undefined> {
  let finishLoad!: (value: string) => void
  const slowReader = cache.read('user:1', '', () => new Promise((resolve) => (finishLoad = resolve)))
  await new Promise((resolve) => setTimeout(resolve, 20))
  await cache.invalidate(['user:1'])
  finishLoad('old')
  assert.equal(await slowReader, 'old')
  return cache.read('user:1', '', async () => 'new')
}

describe('the cache protocol', () => {
  let redisPrefix = ''
  /** Each backend, and how a scope's generation gets lost there (evicted, expired or deleted). */
  const caches: [string, () => Promise<ResponseCache>, (cache: ResponseCache, scope: string) => Promise<void>][] = [
    ['Redis', async () => {
      const { url, prefix } = await sharedRedis()
      redisPrefix = prefix
      return redisCache(url, prefix)
    }, async (_cache, scope) => {
      const client = createClient({ url: sharedRedisUrl })
      await client.connect()
      try {
        assert.equal(await client.del(await client.keys(`${redisPrefix}*:${scope}:gen`)), 1)
      } finally {
        client.destroy()
      }
    }],
    ['in-process', async () => new MemoryCache(60, 100), async (cache, scope) => {
      for (let i = 0; i < 100; i++) await cache.read(`${scope}:other-${i}`, '', async () => 'other')
    }],
  ]
  for (const [name, open, loseGeneration] of caches) {
    it(`${name}: a lost generation never brings back a value cached before a write`, async () => {
      const cache = await open()
      try {
        assert.equal(await cache.read('user:3', '', async () => 'old'), 'old')
        assert.equal(await cache.read('user:3', '', async () => 'not loaded: a hit'), 'old')
        await cache.invalidate(['user:3'])
        assert.equal(await cache.read('user:3', '', async () => 'new'), 'new')
        await loseGeneration(cache, 'user:3')
        assert.equal(await cache.read('user:3', '', async () => 'newest'), 'newest')
      } finally {
        await cache.close()
      }
    })

    it(`${name}: a value loaded before a write is never served after it`, async () => {
      const cache = await open()
      try {
        assert.equal(await readerRacingAWrite(cache), 'new')
      } finally {
        await cache.close()
      }
    })

    it(`${name}: concurrent misses of one key make one load, and the next read hits`, async () => {
      const cache = await open()
      try {
        let loads = 0
        const load = async () => {
          loads++
          await new Promise((resolve) => setTimeout(resolve, 20))
          return 'value'
        }
        const values = await Promise.all(Array.from({ length: 20 }, () => cache.read('user:2', '', load)))
        assert.deepEqual(new Set(values), new Set(['value']))
        assert.equal(loads, 1)
        assert.equal(await cache.read('user:2', '', load), 'value')
        assert.equal(loads, 1)
        assert.equal(cache.stats.hits, 1)
        assert.equal(cache.stats.misses, 20)
      } finally {
        await cache.close()
      }
    })
  }

  it('Redis: writes that commit while an invalidation is under way are invalidated together, by the next script', async () => {
    const { url, prefix } = await sharedRedis()
    const cache = await redisCache(url, prefix)
    try {
      const scopes = Array.from({ length: 50 }, (_, i) => `user:${100 + i}`)
      for (const scope of scopes) {
        assert.equal(await cache.read(scope, '', async () => 'old'), 'old')
        assert.equal(await cache.read(scope, '', async () => 'not loaded: a hit'), 'old')
      }
      const before = await scriptCalls(url)
      await Promise.all(scopes.map((scope) => cache.invalidate([scope])))
      assert.equal((await scriptCalls(url)) - before, 2, 'the first write alone, the 49 that came while it was under way together')
      for (const scope of scopes) assert.equal(await cache.read(scope, '', async () => 'new'), 'new', scope)
      await cache.invalidate(['user:100'])
      assert.equal((await scriptCalls(url)) - before, 3, 'a lone write sends its own at once')
      assert.equal(await cache.read('user:100', '', async () => 'newest'), 'newest')
    } finally {
      await cache.close()
    }
  })

  it('the same race check catches the naive delete-on-write cache', async () => {
    const { url, prefix } = await sharedRedis()
    const naive = await new NaiveRedisCache(url, prefix).connect()
    try {
      assert.equal(await readerRacingAWrite(naive), 'old')
    } finally {
      await naive.close()
    }
  })
})

describe('cached reads over HTTP with two instances sharing Redis', () => {
  let database: TestDatabase
  let redis: { url: string; prefix: string }
  let a: RunningApp
  let b: RunningApp

  before(async () => {
    database = await createTestDatabase()
    redis = await sharedRedis()
    const env = { DATABASE_URL: database.url, REDIS_URL: redis.url, CACHE_PREFIX: redis.prefix, RATE_LIMIT_MAX: '0' }
    a = await startApp(env)
    b = await startApp(env)
  })
  after(async () => {
    await a?.close()
    await b?.close()
    await database?.drop()
  })

  it('serves repeated reads from Redis, each key with a TTL, and counts hits and misses', async () => {
    const created = await request(a.url, 'POST', '/users', { json: { name: 'Cached', email: 'cached@example.com' } })
    const path = `/users/${created.body.id}`
    const misses = a.cache.stats.misses
    const hits = a.cache.stats.hits
    const first = await request(a.url, 'GET', path)
    const second = await request(a.url, 'GET', path)
    assert.deepEqual(second.body, first.body)
    assert.equal(second.text, first.text)
    assert.equal(a.cache.stats.misses, misses + 1)
    assert.equal(a.cache.stats.hits, hits + 1)
    assert.equal(second.headers.get('content-type'), 'application/json; charset=utf-8')

    const client = createClient({ url: redis.url })
    await client.connect()
    try {
      const keys = await client.keys(`${redis.prefix}*`)
      assert.ok(keys.length >= 2, keys.join())
      for (const key of keys) {
        const ttl = await client.ttl(key)
        assert.ok(ttl > 0, `${key} has no TTL`)
      }
      const stored = await Promise.all(keys.map((key) => client.get(key)))
      assert.ok(stored.some((value) => value?.endsWith(`\n${first.text}`)), 'the serialized response is stored')
    } finally {
      client.destroy()
    }
  })

  it('serves a cached page, read from Redis as bytes, exactly as the page it loaded: text in any script, Link, length', async () => {
    for (const name of ['Zoë Ångström ✓', '山田 太郎 ✓', 'Emoji 🙂 ✓']) {
      await request(a.url, 'POST', '/users', { json: { name, email: `${name.length}-${Buffer.from(name).toString('hex')}@example.com` } })
    }
    const path = '/users?limit=2&q=%E2%9C%93'
    const hits = a.cache.stats.hits
    const loaded = await request(a.url, 'GET', path)
    const cached = await request(a.url, 'GET', path)
    assert.equal(a.cache.stats.hits, hits + 1, 'the second read is a hit')
    assert.equal(cached.text, loaded.text)
    assert.match(cached.text, /"Zoë Ångström ✓".*"山田 太郎 ✓"/)
    for (const header of ['content-type', 'content-length', 'etag', 'link']) {
      assert.equal(cached.headers.get(header), loaded.headers.get(header), header)
    }
    assert.match(cached.headers.get('link')!, /^<\/users\?limit=2&after=\d+&q=%E2%9C%93>; rel="next"$/)
    const head = await fetch(new URL(path, a.url), { method: 'HEAD' })
    assert.equal(head.headers.get('content-length'), loaded.headers.get('content-length'))
  })

  it('answers If-None-Match with 304 on a user and on a page, and a new ETag after a change', async () => {
    const created = await request(a.url, 'POST', '/users', { json: { name: 'Tagged', email: 'tagged@example.com' } })
    for (const path of [`/users/${created.body.id}`, '/users?limit=5']) {
      const first = await request(a.url, 'GET', path)
      const etag = first.headers.get('etag')!
      assert.match(etag, /^"[\w-]{22}"$/)
      const fromOther = await request(b.url, 'GET', path)
      assert.equal(fromOther.headers.get('etag'), etag, 'instances agree on the ETag')
      const revalidated = await request(b.url, 'GET', path, { headers: { 'if-none-match': `W/"x", ${etag}` } })
      assert.equal(revalidated.status, 304)
      assert.equal(revalidated.text, '')
      assert.equal(revalidated.headers.get('etag'), etag)
      assert.equal((await request(b.url, 'GET', path, { headers: { 'if-none-match': '"other"' } })).status, 200)
    }
    await request(a.url, 'PATCH', `/users/${created.body.id}`, { json: { name: 'Retagged' } })
    const changed = await request(b.url, 'GET', `/users/${created.body.id}`)
    assert.equal(changed.body.name, 'Retagged')
    const stale = await request(b.url, 'GET', `/users/${created.body.id}`, { headers: { 'if-none-match': changed.headers.get('etag')! } })
    assert.equal(stale.status, 304)
  })

  it('after each kind of write on one instance, the other instance reads the new data at once', async () => {
    const warm = async (id: number) => {
      await request(b.url, 'GET', `/users/${id}`)
      await request(b.url, 'GET', '/users?limit=1000')
      await request(b.url, 'GET', `/users/${id}`)
    }
    const listed = async () => (await request(b.url, 'GET', '/users?limit=1000')).body as { id: number; name: string }[]

    await warm(1)
    const created = await request(a.url, 'POST', '/users', { json: { name: 'Fresh', email: 'fresh@example.com' } })
    const id = created.body.id
    assert.ok((await listed()).some((user) => user.id === id), 'create shows in the list')

    await warm(id)
    await request(a.url, 'PUT', `/users/${id}`, { json: { name: 'Replaced', email: 'replaced@example.com' } })
    assert.equal((await request(b.url, 'GET', `/users/${id}`)).body.name, 'Replaced')
    assert.equal((await listed()).find((user) => user.id === id)?.name, 'Replaced')

    await warm(id)
    await request(a.url, 'PATCH', `/users/${id}`, { json: { name: 'Patched' } })
    assert.equal((await request(b.url, 'GET', `/users/${id}`)).body.name, 'Patched')
    assert.equal((await listed()).find((user) => user.id === id)?.name, 'Patched')

    await warm(id)
    await request(a.url, 'DELETE', `/users/${id}`)
    assert.equal((await request(b.url, 'GET', `/users/${id}`)).status, 404)
    assert.ok(!(await listed()).some((user) => user.id === id), 'delete leaves the list')
  })
})

type CacheChoice = (opened: ResponseCache, redis: { url: string; prefix: string }) => Promise<ResponseCache>

/** Slower than the fills below, so that a naive cache's late fill lands between two writes. */
const writePauseMs = 45

async function freshnessUnderLoad(choose: CacheChoice) {
  const database = await createTestDatabase()
  const redis = await sharedRedis()
  const env = { DATABASE_URL: database.url, REDIS_URL: redis.url, CACHE_PREFIX: redis.prefix, RATE_LIMIT_MAX: '0' }
  const instances: RunningApp[] = []
  try {
    for (let i = 0; i < 2; i++) instances.push(await startApp(env, { wrapCache: (opened) => choose(opened, redis) }))
    const userIds: number[] = []
    for (let i = 0; i < 3; i++) {
      const created = await request(instances[0]!.url, 'POST', '/users', { json: { name: 'v0', email: `load${i}@example.com` } })
      userIds.push(created.body.id)
    }
    return await readWriteLoad({ urls: instances.map((instance) => instance.url), userIds, writesPerUser: 30, readers: 16, writePauseMs })
  } finally {
    for (const instance of instances) await instance.close()
    await database.drop()
  }
}

describe('freshness under concurrent readers and writers on two instances, with slow fills', () => {
  const slowFillMs = 30

  it('no read that starts after an acknowledged write returns older data', async () => {
    const report = await freshnessUnderLoad(async (opened) => withSlowFills(opened, slowFillMs))
    assert.deepEqual(report.failures, [])
    assert.deepEqual(report.staleReads, [])
    assert.equal(report.writes, 90)
    assert.ok(report.reads >= 60, `only ${report.reads} reads`)
  })

  it('the same load catches stale reads from a naive delete-on-write cache', async () => {
    // The race needs a fill to land between two writes; on a busy machine one run may miss it.
    for (let run = 1; ; run++) {
      const report = await freshnessUnderLoad(async (opened, redis) => {
        await opened.close()
        return withSlowFills(await new NaiveRedisCache(redis.url, redis.prefix).connect(), slowFillMs)
      })
      assert.deepEqual(report.failures, [])
      if (report.staleReads.length > 0) return
      assert.ok(run < 3, `the checker saw no stale read from the naive cache in ${run} runs`)
    }
  })
})
