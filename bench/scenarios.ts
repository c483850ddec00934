import { spawn } from 'node:child_process'
import { once } from 'node:events'
import type pg from 'pg'
import { projectRoot } from '../test/support/process.js'
import type { LoadSpec, Traffic } from './load.js'

export interface Scenario {
  /** Instead of the API: a ceiling of bench/ceilings.ts; a Redis one against a value shaped as the API's user, or page of 100. */
  ceiling?: 'redis-get' | 'fastify-redis-get' | 'pg-select' | 'pg-insert' | 'pg-update'
  ceilingValue?: 'user' | 'page'
  env: NodeJS.ProcessEnv
  /** Sent once before the traffic, so that a cached scenario measures hits. */
  fill?: Traffic
  traffic: Traffic
}

/** What `bench:profile` and `bench:compare` can send, against `users` users. */
export function scenarios(users: number): Record<string, Scenario> {
  return {
    'cached-get': { env: {}, fill: { kind: 'get-each-id', maxId: users }, traffic: { kind: 'get-random-id', maxId: users } },
    'cached-list': {
      env: {},
      fill: { kind: 'list-each-cursor', maxId: users, limit: 100 },
      traffic: { kind: 'list-random-cursor', maxId: users, limit: 100 },
    },
    'cached-get-rate-limited': {
      env: { RATE_LIMIT_MAX: '1000000000' },
      fill: { kind: 'get-each-id', maxId: users },
      traffic: { kind: 'get-random-id', maxId: users },
    },
    'ceiling-redis-get': { ceiling: 'redis-get', ceilingValue: 'user', env: {}, traffic: { kind: 'get-random-id', maxId: users } },
    'ceiling-fastify-redis-get': { ceiling: 'fastify-redis-get', ceilingValue: 'user', env: {}, traffic: { kind: 'get-random-id', maxId: users } },
    'ceiling-redis-get-page': {
      ceiling: 'redis-get',
      ceilingValue: 'page',
      env: {},
      traffic: { kind: 'list-random-cursor', maxId: users, limit: 100 },
    },
    'ceiling-pg-select': { ceiling: 'pg-select', env: {}, traffic: { kind: 'get-random-id', maxId: users } },
    'ceiling-pg-insert': { ceiling: 'pg-insert', env: {}, traffic: { kind: 'create-unique', tag: 'profile' } },
    'ceiling-pg-update': { ceiling: 'pg-update', env: {}, traffic: { kind: 'rename-random-id', maxId: users } },
    'uncached-get': { env: { CACHE_ENABLED: 'false' }, traffic: { kind: 'get-random-id', maxId: users } },
    post: { env: {}, traffic: { kind: 'create-unique', tag: 'profile' } },
    patch: { env: {}, traffic: { kind: 'rename-random-id', maxId: users } },
  }
}

/** `--env KEY=VALUE` options as environment settings (the value may hold `=`). */
export const envSettings = (list: string[]): NodeJS.ProcessEnv =>
  Object.fromEntries(list.map((setting) => setting.split(/=(.*)/s).slice(0, 2)))

/** Users `from` to `to`, in one statement, and fresh planner statistics. */
export async function insertUsers(client: pg.Client, from: number, to: number): Promise<void> {
  await client.query(
    `INSERT INTO users (name, email) SELECT 'User ' || g, 'user-' || g || '@bench.example.com' FROM generate_series($1::int, $2::int) g`,
    [from, to],
  )
  await client.query('ANALYZE users')
}

/**
 * Runs the load generator in a process of its own, until it has sent `spec.requests` requests (or for
 * `spec.durationSeconds`); resolves to the CPU time it spent sending a number of requests (undefined for a duration).
 */
export async function sendLoad(spec: LoadSpec): Promise<number | undefined> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/load.ts', JSON.stringify(spec)], {
    cwd: projectRoot,
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let report = ''
  child.stdout.on('data', (chunk: Buffer) => (report += chunk))
  const [code] = await once(child, 'exit')
  if (code !== 0) throw new Error(`the load generator exited with ${code}`)
  return spec.requests === undefined ? undefined : (JSON.parse(report) as { cpuMs: number }).cpuMs
}
