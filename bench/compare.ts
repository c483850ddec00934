/**
 * `npm run bench:compare -- --api-dir <other build> [--env-b KEY=VALUE]`: whether a change makes a
 * request cheaper, when the difference is smaller than what this machine's other tenants do to one
 * run. Two APIs, A (this build) and B (another build, or this one with other settings), serve the
 * same traffic at the same time, each from its own load generator, for a few rounds; each reports
 * its CPU per request (user + system, /proc) over the requests it answered. The machine slows both
 * alike, so B's CPU as a share of A's holds where either alone moves by a quarter from run to run.
 */
import { parseArgs } from 'node:util'
import pg from 'pg'
import { createClient } from 'redis'
import { createTestDatabase } from '../test/support/postgres.js'
import { projectRoot, startServerProcess, type ServerProcess } from '../test/support/process.js'
import { sharedRedis } from '../test/support/redis.js'
import { cacheSettled } from './cache-settled.js'
import type { Traffic } from './load.js'
import { podRuntime } from './pod-heap.js'
import { cpuMs, residentMb } from './process-usage.js'
import { envSettings, insertUsers, scenarios, sendLoad } from './scenarios.js'

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

const apiScenarios = Object.entries(scenarios(users)).filter(([, scenario]) => !scenario.ceiling)
const scenario = Object.fromEntries(apiScenarios)[options.scenario!]
if (!scenario) throw new Error(`--scenario must be one of ${apiScenarios.map(([name]) => name).join(', ')}`)

const load = (url: string, traffic: Traffic, length: { requests: number } | { seconds: number }) =>
  sendLoad({
    url,
    traffic,
    connections: Number(options.connections),
    warmupSeconds: 0,
    durationSeconds: 'seconds' in length ? length.seconds : 0,
    requests: 'requests' in length ? length.requests : undefined,
  })

/** Requests the API has answered so far, by its own request-duration histogram. */
async function answered(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  let count = 0
  for (const [, value] of text.matchAll(/^http_request_duration_seconds_count\{[^}]*\} (\d+)$/gm)) count += Number(value)
  return count
}

/** The built API in `directory`, as the image and the Kubernetes pod run it (see bench/profile.ts). */
async function startApi(directory: string, env: NodeJS.ProcessEnv): Promise<ServerProcess> {
  const pod = await podRuntime(env.NODE_OPTIONS)
  return startServerProcess({ ...pod.env, ...env }, { cwd: directory, keepOutput: false, nodeArgs: pod.nodeArgs })
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
 * than on the other, round after round, and not because that side was started or loaded second. So
 * each variant is measured on both sides and the two ratios combined, which divides a side's
 * advantage out.
 */
async function sideBySide(variants: [Variant, Variant], databaseUrl: string, prefix: string): Promise<[Usage, Usage]> {
  const apis: ServerProcess[] = []
  try {
    for (const [side, variant] of variants.entries()) {
      apis.push(await startApi(variant.directory, { ...variant.env, DATABASE_URL: databaseUrl, CACHE_PREFIX: `${prefix}${variant.name}${side}:` }))
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
      const before = await Promise.all(apis.map(async (api) => ({ cpuMs: await cpuMs(api.child.pid!), requests: await answered(api.url) })))
      await Promise.all(apis.map((api) => load(api.url, scenario!.traffic, { seconds: Number(options.seconds) })))
      const used = await Promise.all(
        apis.map(async (api, side) => ({
          cpuMs: (await cpuMs(api.child.pid!)) - before[side]!.cpuMs,
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
    const rss = await Promise.all(apis.map((api) => residentMb(api.child.pid!)))
    console.log(`| ${variants[0].name} then ${variants[1].name}, RSS after (MB) | ${rss[0]!.toFixed(0)} | ${rss[1]!.toFixed(0)} | | |`)
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
    ...envSettings(options.env),
  }
  const a: Variant = { name: 'A', directory: projectRoot, env }
  const b: Variant = { name: 'B', directory: options['api-dir']!, env: { ...env, ...envSettings(options['env-b']) } }
  // Migrated by the first API started, filled before any is loaded.
  await (await startApi(projectRoot, { ...env, DATABASE_URL: database.url, CACHE_ENABLED: 'false' })).stop()
  const client = new pg.Client({ connectionString: database.url })
  await client.connect()
  await insertUsers(client, 1, users)
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
