/** A smoke run of `npm run bench`: every part of it works; its numbers are not looked at. */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { createTestDatabase } from './support/postgres.js'
import { projectRoot } from './support/process.js'
import { sharedRedis } from './support/redis.js'

describe('the benchmark', () => {
  it('runs every scenario and ceiling end to end and saves its table (smoke: 1 s each)', async () => {
    // Fails at once, saying how to start them, when PostgreSQL or Redis is down.
    await (await createTestDatabase()).drop()
    await sharedRedis()
    const out = await mkdtemp(join(tmpdir(), 'fullstack-bench-'))
    try {
      const child = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--smoke', '--out', out], {
        cwd: projectRoot,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let output = ''
      child.stdout.on('data', (chunk) => (output += chunk))
      child.stderr.on('data', (chunk) => (output += chunk))
      const [code] = await once(child, 'exit')
      assert.equal(code, 0, output)

      const rows = output.split('\n').filter((line) => /^\| (?!scenario|---)/.test(line))
      const scenarios = rows.map((row) => row.split('|')[1]!.trim())
      for (const expected of [
        'ceiling: node:http, fixed JSON',
        'ceiling: bare Fastify + node-redis GET, user-sized',
        'ceiling: node-redis GET, user-sized, around the next row',
        'ceiling: node-redis GET, page-sized, around the next row',
        'ceiling: pg SELECT by id, around the next row',
        'ceiling: pg INSERT, around the next row',
        'ceiling: pg UPDATE by id, around the next row',
        'cached GET /users/{id}',
        'cached GET /users?limit=100',
        'POST /users',
        'PATCH /users/{id}',
        '90% GET /users/{id}, 10% PATCH',
        'uncached GET /users/{id}',
        'cached GET /users/{id}, 2 workers',
        'cached GET /users/{id}, rate limiter on (counters in Redis)',
      ]) {
        assert.ok(scenarios.includes(expected), `no row for ${expected}:\n${output}`)
      }
      for (const row of rows) assert.match(row.split('|')[2]!, /^ [\d,]+ $/, row)
      // A ratio against a ceiling comes right after that ceiling's own run around it.
      rows.forEach((row, index) => {
        const ceiling = row.split('|')[7]?.trim()
        if (ceiling && !ceiling.endsWith('(above)')) assert.equal(scenarios[index - 1], `ceiling: ${ceiling}, around the next row`, row)
      })
      assert.match(output, /^## Targets$/m)
      assert.match(output, /^Not a target, for scale: bare Fastify .* is [\d,]+% of bare Fastify's\.$/m)
      assert.match(output, /^\| first start, new DATA_DIR \| [\d,]+ \|$/m)
      assert.match(output, /^- (PASS|FAIL): web page first load \(HTML \+ JS \+ CSS, compressed\)/m)

      const [saved, ...others] = await readdir(out)
      assert.deepEqual(others, [])
      assert.match(await readFile(join(out, saved!), 'utf8'), /\| cached GET \/users\/\{id\} \|/)
    } finally {
      await rm(out, { recursive: true, force: true })
    }
  })
})
