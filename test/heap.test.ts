import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { totalmem } from 'node:os'
import { describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { containerMemoryLimit, heapGrowingPercent, nodeOptions, pretenuringOff, semiSpaceMb, workerHeapFlags } from '../src/config/heap.js'
import { createTestDatabase } from './support/postgres.js'
import { startServerProcess } from './support/process.js'
import { sharedRedis } from './support/redis.js'

const mb = 2 ** 20

/** The command lines of the processes `pid` started (Linux /proc). */
function childCommandLines(pid: number): string[][] {
  const path = `/proc/${pid}/task/${pid}/children`
  const children = existsSync(path) ? readFileSync(path, 'utf8').split(' ').filter(Boolean) : []
  return children.map((child) => readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0').filter(Boolean))
}
const semiSpace = `--max-semi-space-size=${semiSpaceMb}`
const growing = `--heap-growing-percent=${heapGrowingPercent}`

/** The heap limit in MB, and the largest the young generation grew to, of a Node process started with `flags`. */
function heapOf(flags: string[]): { limitMb: number; youngMb: number } {
  const script = `
    const v8 = require('v8')
    let young = 0, kept = []
    for (let i = 0; i < 3e6; i++) {
      kept.push({ i, name: 'user ' + i })
      if (kept.length > 20000) kept = []
      if (i % 1000 === 0) young = Math.max(young, v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size)
    }
    console.log(JSON.stringify({ limitMb: v8.getHeapStatistics().heap_size_limit / ${mb}, youngMb: young / ${mb} }))`
  const { stdout, status, stderr } = spawnSync(process.execPath, [...flags, '-e', script], { encoding: 'utf8', env: { PATH: process.env.PATH } })
  assert.equal(status, 0, stderr)
  return JSON.parse(stdout) as { limitMb: number; youngMb: number }
}

describe('heap sizing', () => {
  it('gives each worker half of its share of the container as old generation, and the young generation and growth this service needs', () => {
    assert.deepEqual(workerHeapFlags(1024 * mb, 4, []), ['--max-old-space-size=128', semiSpace, growing, pretenuringOff])
    assert.deepEqual(workerHeapFlags(1000 * mb, 3, []), ['--max-old-space-size=166', semiSpace, growing, pretenuringOff])
  })

  it('leaves the old generation to V8 without a memory limit', () => {
    assert.deepEqual(workerHeapFlags(undefined, 2, []), [semiSpace, growing, pretenuringOff])
  })

  it('keeps what the command line or NODE_OPTIONS set, in either spelling', () => {
    const limit = 1024 * mb
    assert.deepEqual(workerHeapFlags(limit, 2, ['--enable-source-maps', '--max-http-header-size=32768']), ['--max-old-space-size=256', semiSpace, growing, pretenuringOff])
    assert.deepEqual(workerHeapFlags(limit, 2, ['--max-old-space-size=200']), [semiSpace, growing, pretenuringOff])
    assert.deepEqual(workerHeapFlags(limit, 2, ['--max_old_space_size=200']), [semiSpace, growing, pretenuringOff])
    assert.deepEqual(workerHeapFlags(limit, 2, ['--max-old-space-size-percentage=40']), [semiSpace, growing, pretenuringOff])
    assert.deepEqual(workerHeapFlags(limit, 2, ['--max-semi-space-size=4']), ['--max-old-space-size=256', growing, pretenuringOff])
    assert.deepEqual(workerHeapFlags(limit, 2, ['--max-heap-size=300']), [growing, pretenuringOff])
    assert.deepEqual(workerHeapFlags(limit, 2, ['--heap_growing_percent=100']), ['--max-old-space-size=256', semiSpace, pretenuringOff])
    assert.deepEqual(workerHeapFlags(limit, 2, ['--allocation_site_pretenuring']), ['--max-old-space-size=256', semiSpace, growing])
    assert.deepEqual(nodeOptions(' --no-warnings   --max-semi-space-size=4 '), ['--no-warnings', '--max-semi-space-size=4'])
  })

  it('are flags V8 applies: the old generation plus three semi-spaces, where a small heap alone would get a young generation of 2 MB', () => {
    const sized = heapOf(workerHeapFlags(1024 * mb, 4, []))
    assert.equal(sized.limitMb, 128 + 3 * semiSpaceMb)
    assert.ok(sized.youngMb > 2, `young generation ${sized.youngMb} MB`)
    assert.ok(heapOf(['--max-heap-size=176']).youngMb <= 2)
  })

  it('reads no limit where Node reports none: 0, or more than the host has', () => {
    assert.equal(containerMemoryLimit(0, 8192 * mb), undefined)
    assert.equal(containerMemoryLimit(2 ** 64, 8192 * mb), undefined)
    assert.equal(containerMemoryLimit(9223372036854771712, 8192 * mb), undefined)
    assert.equal(containerMemoryLimit(256 * mb, 8192 * mb), 256 * mb)
  })

  it('reads the limit of the cgroup this test runs in, as libuv does', () => {
    const limit = containerMemoryLimit()
    assert.ok(limit === undefined || (limit > 0 && limit < totalmem()), String(limit))
  })

  it('reach each worker of the built server, unless NODE_OPTIONS sets them', async () => {
    const database = await createTestDatabase()
    const redis = await sharedRedis()
    const env = { DATABASE_URL: database.url, REDIS_URL: redis.url, CACHE_PREFIX: redis.prefix, WEB_CONCURRENCY: '2' }
    const workersOf = async (extra: NodeJS.ProcessEnv) => {
      const server = await startServerProcess({ ...env, ...extra })
      try {
        let workers = childCommandLines(server.child.pid!)
        for (let waited = 0; workers.length < 2; waited += 100) {
          assert.ok(waited < 10_000, `the workers did not start:\n${server.output()}`)
          await sleep(100)
          workers = childCommandLines(server.child.pid!)
        }
        return workers
      } finally {
        await server.stop()
      }
    }
    try {
      const expected = workerHeapFlags(containerMemoryLimit(), 2, [])
      for (const worker of await workersOf({})) assert.deepEqual(worker.slice(1, -1), expected)
      for (const worker of await workersOf({ NODE_OPTIONS: '--max-semi-space-size=4 --max-old-space-size=300' })) {
        assert.deepEqual(worker.slice(1, -1), [growing, pretenuringOff])
      }
    } finally {
      await database.drop()
    }
  })
})
