/**
 * `npm run bench:compare -- --api-dir <other build> [--env-b KEY=VALUE]`: whether a change makes a
 * request cheaper, when the difference is smaller than what this machine's other tenants do to one
 * run. Two APIs, A (this build) and B (another build, or this one with other settings), serve the
 * same traffic at the same time, each from its own load generator, for a few rounds; each reports
 * its CPU per request (user + system, /proc) over the requests it answered. The machine slows both
 * alike, so B's CPU as a share of A's holds where either alone moves by a quarter from run to run.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { createClient } from 'redis'
import { createTestDatabase } from '../test/support/postgres.js'
import { freePort, projectRoot } from '../test/support/process.js'
import { sharedRedis } from '../test/support/redis.js'
import { cacheSettled } from './cache-settled.js'
import type { LoadSpec, Traffic } from './load.js'
import { podRuntime } from './pod-heap.js'

const { values: options } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'cached-get' },
    users: { type: 'string', default: '10000' },
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    /** Connections of each load generator. */
    connections: { type: 'string', default: '32' },
    'api-dir': { type: 'string', default: projectRoot },
    /** KEY=VALUE settings for both APIs on top of the scenario's. */
    env: { type: 'string', multiple: true, default: [] },
    /** KEY=VALUE settings for B only. */
    'env-b': { type: 'string', multiple: true, default: [] },
  },
})
const users = Number(options.users)

interface Scenario {
  env: NodeJS.ProcessEnv
  fill?: Traffic
  traffic: Traffic
}

const scenarios: Record<string, Scenario> = {
  'cached-get': { env: {}, fill: { kind: 'get-each-id', maxId: users }, traffic: { kind: 'get-random-id', maxId: users } },
  'cached-list': {
    env: {},
    fill: { kind: 'list-each-cursor', maxId: users, limit: 100 },
    traffic: { kind: 'list-random-cursor', maxId: users, limit: 100 },
  },
  'uncached-get': { env: { CACHE_ENABLED: 'false' }, traffic: { kind: 'get-random-id', maxId: users } },
  patch: { env: {}, traffic: { kind: 'rename-random-id', maxId: users } },
}
const scenario = scenarios[options.scenario!]
if (!scenario) throw new Error(`--scenario must be one of ${Object.keys(scenarios).join(', ')}`)

const settings = (list: string[]) => Object.fromEntries(list.map((setting) => setting.split(/=(.*)/s).slice(0, 2)))

async function generate(spec: LoadSpec): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/load.ts', JSON.stringify(spec)], {
    cwd: projectRoot,
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  const [code] = await once(child, 'exit')
  if (code !== 0) throw new Error(`the load generator exited with ${code}`)
}

const load = (url: string, traffic: Traffic, length: { requests: number } | { seconds: number }) =>
  generate({
    url,
    traffic,
    connections: Number(options.connections),
    warmupSeconds: 0,
    durationSeconds: 'seconds' in length ? length.seconds : 0,
    requests: 'requests' in length ? length.requests : undefined,
  })

/** User + system CPU of a process so far, in milliseconds (clock ticks are 10 ms on Linux). */
async function cpuMs(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10
}

/** Requests the API has answered so far, by its own request-duration histogram. */
async function answered(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  let count = 0
  for (const [, value] of text.matchAll(/^http_request_duration_seconds_count\{[^}]*\} (\d+)$/gm)) count += Number(value)
  return count
}

interface Api {
  name: string
  url: string
  pid: number
  stop(): Promise<void>
}

/** The built API in `directory`, as the image and the Kubernetes pod run it (see bench/profile.ts). */
async function startApi(name: string, directory: string, env: NodeJS.ProcessEnv): Promise<Api> {
  const port = await freePort()
  const pod = await podRuntime(env.NODE_OPTIONS)
  const child = spawn(process.execPath, [...pod.nodeArgs, 'dist/server.js'], {
    cwd: directory,
    env: { PATH: process.env.PATH, NODE_ENV: 'production', ...pod.env, ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  child.stdout!.resume()
  const exited = once(child, 'exit')
  const url = `http://127.0.0.1:${port}`
  while (!(await fetch(`${url}/readyz`).then((answer) => answer.ok, () => false))) {
    if (child.exitCode !== null) throw new Error(`API ${name} exited with ${child.exitCode}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return {
    name,
    url,
    pid: child.pid!,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM')
      await exited
    },
  }
}

interface Variant {
  name: 'A' | 'B'
  directory: string
  env: NodeJS.ProcessEnv
}

interface Usage {
  cpuMs: number
  requests: number
}

const microsPerRequest = (usage: Usage) => (1000 * usage.cpuMs) / usage.requests

/**
 * Both variants started and loaded side by side, one round after another. Two APIs side by side do not
 * share the machine evenly: the same build against itself cost 5–11 % more per request on one side
 * than on the other, round after round, whichever was started or loaded first. So each variant is
 * measured on both sides and the two ratios combined, which divides a side's advantage out.
 */
async function sideBySide(variants: [Variant, Variant], databaseUrl: string, prefix: string): Promise<[Usage, Usage]> {
  const apis: Api[] = []
  try {
    for (const [side, variant] of variants.entries()) {
      apis.push(await startApi(variant.name, variant.directory, { ...variant.env, DATABASE_URL: databaseUrl, CACHE_PREFIX: `${prefix}${variant.name}${side}:` }))
    }
    for (const api of apis) {
      if (scenario!.env.CACHE_ENABLED !== 'false') await cacheSettled(api.url)
      if (scenario!.fill) await load(api.url, scenario!.fill, { requests: users })
      // Lets V8 optimize the hot paths before anything is counted.
      await load(api.url, scenario!.traffic, { requests: 20_000 })
    }
    const totals: [Usage, Usage] = [
      { cpuMs: 0, requests: 0 },
      { cpuMs: 0, requests: 0 },
    ]
    for (let round = 1; round <= Number(options.rounds); round++) {
      const before = await Promise.all(apis.map(async (api) => ({ cpuMs: await cpuMs(api.pid), requests: await answered(api.url) })))
      await Promise.all(apis.map((api) => load(api.url, scenario!.traffic, { seconds: Number(options.seconds) })))
      const used = await Promise.all(
        apis.map(async (api, side) => ({
          cpuMs: (await cpuMs(api.pid)) - before[side]!.cpuMs,
          requests: (await answered(api.url)) - before[side]!.requests,
        })),
      )
      used.forEach((usage, side) => {
        totals[side]!.cpuMs += usage.cpuMs
        totals[side]!.requests += usage.requests
      })
      const [first, second] = used.map(microsPerRequest) as [number, number]
      console.log(`| ${variants[0].name} then ${variants[1].name}, round ${round} | ${first.toFixed(1)} | ${second.toFixed(1)} | ${used[0]!.requests} | ${used[1]!.requests} |`)
    }
    return variants[0].name === 'A' ? totals : [totals[1], totals[0]]
  } finally {
    await Promise.all(apis.map((api) => api.stop()))
  }
}

const database = await createTestDatabase()
const redis = await sharedRedis()
try {
  const env = {
    REDIS_URL: redis.url,
    RATE_LIMIT_MAX: '0',
    API_WRITES_OPEN: 'true',
    LOG_LEVEL: 'info',
    ...scenario.env,
    ...settings(options.env),
  }
  const a: Variant = { name: 'A', directory: projectRoot, env }
  const b: Variant = { name: 'B', directory: options['api-dir']!, env: { ...env, ...settings(options['env-b']) } }
  // Migrated by the first API started, filled before any is loaded.
  const migrated = startApi('migration', projectRoot, { ...env, DATABASE_URL: database.url, CACHE_ENABLED: 'false' })
  await (await migrated).stop()
  const client = new pg.Client({ connectionString: database.url })
  await client.connect()
  await client.query(`INSERT INTO users (name, email) SELECT 'User ' || g, 'user-' || g || '@bench.example.com' FROM generate_series(1, $1::int) g`, [
    users,
  ])
  await client.query('ANALYZE users')
  await client.end()

  console.log(`## ${options.scenario}: A = this build, B = ${options['api-dir']} ${options['env-b']!.join(' ')}\n`)
  console.log('| API CPU per request (µs) | first | second | first: requests | second: requests |')
  console.log('| --- | ---: | ---: | ---: | ---: |')
  const [aFirst, bSecond] = await sideBySide([a, b], database.url, redis.prefix)
  const [aSecond, bFirst] = await sideBySide([b, a], database.url, redis.prefix)
  const bSecondToAFirst = microsPerRequest(bSecond) / microsPerRequest(aFirst)
  const bFirstToASecond = microsPerRequest(bFirst) / microsPerRequest(aSecond)
  const percent = (ratio: number) => `${(100 * ratio).toFixed(1)} %`
  console.log(
    `\nB's CPU per request as a share of A's: ${percent(bSecondToAFirst)} with A first, ${percent(bFirstToASecond)} with B first; ` +
      `${percent(Math.sqrt(bSecondToAFirst * bFirstToASecond))} both ways (geometric mean).`,
  )
} finally {
  await database.drop()
  const cleaner = createClient({ url: redis.url })
  await cleaner.connect()
  for await (const keys of cleaner.scanIterator({ MATCH: `${redis.prefix}*`, COUNT: 1000 })) if (keys.length > 0) await cleaner.del(keys)
  cleaner.destroy()
}
