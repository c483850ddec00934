/**
 * `npm run bench`: the API in production mode against the local PostgreSQL and Redis, each
 * scenario next to the ceiling Node, Redis or PostgreSQL sets for it on this machine, measured in
 * the same run with the same load. Prints a Markdown table and saves it under bench/results/.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, writeFile } from 'node:fs/promises'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { createClient } from 'redis'
import { createTestDatabase, type TestDatabase } from '../test/support/postgres.js'
import { freePort, projectRoot, startServerProcess, type ServerProcess } from '../test/support/process.js'
import { sharedRedis } from '../test/support/redis.js'
import { cacheSettled } from './cache-settled.js'
import { measureFirstStart } from './first-start.js'
import type { LoadResult, LoadSpec, Traffic } from './load.js'
import { podRuntime } from './pod-heap.js'
import { residentMb } from './process-usage.js'
import { envSettings, insertUsers } from './scenarios.js'
import { firstLoad, firstLoadBudgetBytes, searchPath, searchTraffic } from './web.js'

const { values: options } = parseArgs({
  options: {
    users: { type: 'string', default: '10000' },
    'deep-users': { type: 'string', default: '1000000' },
    connections: { type: 'string', default: '64' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    out: { type: 'string', default: join(projectRoot, 'bench/results') },
    'skip-deep': { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    /** KEY=VALUE settings for every API process on top of the defaults, e.g. `--env NODE_OPTIONS=--max-old-space-size=256`. */
    env: { type: 'string', multiple: true, default: [] },
  },
})
const extraEnv = envSettings(options.env)
const pod = await podRuntime(extraEnv.NODE_OPTIONS)
const smoke = options.smoke
const users = smoke ? 1000 : Number(options.users)
const deepUsers = Number(options['deep-users'])
const connections = Number(options.connections)
const durationSeconds = smoke ? 1 : Number(options.duration)
const warmupSeconds = smoke ? 0.5 : Number(options.warmup)
const skipDeep = smoke || options['skip-deep']
const logLevel = 'info'

interface Ceiling {
  name: string
  requestsPerSecond: number
}

/** A ceiling started once and kept running, measured around every scenario set beside it (see measureApi). */
interface CeilingServer {
  name: string
  kind: string
  env: NodeJS.ProcessEnv
  /** The ceiling's own traffic (its writes carry their own tag, its mix counterpart is the GET alone). */
  traffic: Traffic
  server?: Promise<{ url: string; pid: number }>
  warm: boolean
}

const ceilingServer = (name: string, kind: string, env: NodeJS.ProcessEnv, traffic: Traffic): CeilingServer => ({ name, kind, env, traffic, warm: false })

interface Row {
  scenario: string
  result: LoadResult
  rssMb?: number
  ceiling?: Ceiling
}

const rows: Row[] = []
const children = new Set<ChildProcess>()
const servers = new Set<ServerProcess>()

function collect(child: ChildProcess): Promise<string> {
  let output = ''
  child.stdout!.on('data', (chunk) => (output += chunk))
  child.stderr!.on('data', (chunk) => (output += chunk))
  return once(child, 'exit').then(([code]) => {
    if (code !== 0) throw new Error(`${child.spawnargs.join(' ')} exited with ${code}:\n${output}`)
    return output
  })
}

const tsx = (script: string, ...args: string[]) =>
  spawn(process.execPath, ['--import', 'tsx', join(projectRoot, script), ...args], { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] })

/** Runs the load generator in a process of its own against `url`. */
async function generate(spec: LoadSpec): Promise<string> {
  const child = tsx('bench/load.ts', JSON.stringify(spec))
  children.add(child)
  return collect(child).finally(() => children.delete(child))
}

const load = async (url: string, traffic: Traffic, seconds = { warmup: warmupSeconds, duration: durationSeconds }) =>
  JSON.parse(await generate({ url, traffic, connections, warmupSeconds: seconds.warmup, durationSeconds: seconds.duration })) as LoadResult

/** Two runs of the same length as one: their rates and percentiles averaged, their counts added. */
const bothHalves = (first: LoadResult, second: LoadResult): LoadResult => ({
  requestsPerSecond: (first.requestsPerSecond + second.requestsPerSecond) / 2,
  p50Ms: (first.p50Ms + second.p50Ms) / 2,
  p99Ms: (first.p99Ms + second.p99Ms) / 2,
  requests: first.requests + second.requests,
  errors: first.errors + second.errors,
})

/** Reads every user, or every page, once: a cached scenario measures hits, not fills. */
const prefill = (url: string, traffic: Traffic) => generate({ url, traffic, connections, warmupSeconds: 0, durationSeconds: 0, requests: users })

async function startCeiling(kind: string, env: NodeJS.ProcessEnv): Promise<{ url: string; pid: number; stop(): void }> {
  const port = await freePort()
  const child = spawn(process.execPath, ['--import', 'tsx', join(projectRoot, 'bench/ceilings.ts'), kind, String(port)], {
    cwd: projectRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  children.add(child)
  const [chunk] = (await Promise.race([once(child.stdout!, 'data'), once(child, 'exit')])) as [unknown]
  if (String(chunk).trim() !== 'ready') throw new Error(`ceiling ${kind} did not start`)
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    stop() {
      child.kill()
      children.delete(child)
    },
  }
}

async function measureCeiling(name: string, kind: string, env: NodeJS.ProcessEnv, traffic: Traffic): Promise<Ceiling> {
  const ceiling = await startCeiling(kind, env)
  try {
    const result = await load(ceiling.url, traffic)
    rows.push({ scenario: `ceiling: ${name}`, result, rssMb: await residentMb(ceiling.pid) })
    return { name, requestsPerSecond: result.requestsPerSecond }
  } finally {
    ceiling.stop()
  }
}

/** The headers of an answer of the API, as a ceiling gives them back (Node adds its own Date, Connection, Keep-Alive and Content-Length). */
function responseHeaders(answer: Response): string {
  const added = new Set(['date', 'connection', 'keep-alive', 'content-length', 'transfer-encoding'])
  return JSON.stringify(Object.fromEntries([...answer.headers].filter(([name]) => !added.has(name))))
}

/** `settle`: wait until the cache serves hits, which needs a user 1 in the table. */
async function startApi(env: NodeJS.ProcessEnv, settle = env.CACHE_ENABLED !== 'false'): Promise<ServerProcess> {
  const server = await startServerProcess(
    { RATE_LIMIT_MAX: '0', API_WRITES_OPEN: 'true', LOG_LEVEL: logLevel, ...pod.env, ...extraEnv, ...env },
    { keepOutput: false, nodeArgs: pod.nodeArgs },
  )
  servers.add(server)
  if (settle) await cacheSettled(server.url)
  return server
}

async function stopApi(server: ServerProcess): Promise<void> {
  servers.delete(server)
  await server.stop()
}

/**
 * A scenario, and the ceiling set beside it run for half the time right before it and half right after: the
 * machine's load, which changes from minute to minute here, then weighs on both numbers of the ratio alike (a slow
 * drift cancels out), and each ratio has its own ceiling instead of one measured minutes earlier.
 */
async function measureApi(server: ServerProcess, scenario: string, traffic: Traffic, ceiling?: Ceiling | CeilingServer): Promise<Row> {
  if (ceiling === undefined || !('kind' in ceiling)) {
    const result = await load(server.url, traffic)
    const row = { scenario, result, ceiling, rssMb: await residentMb(server.child.pid!) }
    rows.push(row)
    return row
  }
  const around = await (ceiling.server ??= startCeiling(ceiling.kind, ceiling.env))
  const before = await load(around.url, ceiling.traffic, { warmup: ceiling.warm ? 0 : warmupSeconds, duration: durationSeconds / 2 })
  ceiling.warm = true
  const result = await load(server.url, traffic)
  const rssMb = await residentMb(server.child.pid!)
  const ceilingResult = bothHalves(before, await load(around.url, ceiling.traffic, { warmup: 0, duration: durationSeconds / 2 }))
  rows.push({ scenario: `ceiling: ${ceiling.name}, around the next row`, result: ceilingResult, rssMb: await residentMb(around.pid) })
  const row = { scenario, result, rssMb, ceiling: { name: ceiling.name, requestsPerSecond: ceilingResult.requestsPerSecond } }
  rows.push(row)
  return row
}

const format = (value: number, digits = 0) => value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

function table(): string {
  const lines = [
    '| scenario | requests/s | p50 ms | p99 ms | errors | RSS MB | ceiling | ratio |',
    '| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |',
  ]
  for (const { scenario, result, rssMb, ceiling } of rows) {
    const ratio = ceiling ? `${format((100 * result.requestsPerSecond) / ceiling.requestsPerSecond)}%` : ''
    lines.push(
      `| ${scenario} | ${format(result.requestsPerSecond)} | ${format(result.p50Ms, 1)} | ${format(result.p99Ms, 1)} | ` +
        `${result.errors} | ${rssMb === undefined ? '' : format(rssMb)} | ${ceiling?.name ?? ''} | ${ratio} |`,
    )
  }
  return lines.join('\n')
}

const target = (met: boolean, text: string) => `- ${met ? 'PASS' : 'FAIL'}: ${text}`
const ratioTarget = (row: Row, minimum: number) =>
  target(
    row.result.requestsPerSecond >= minimum * row.ceiling!.requestsPerSecond,
    `${row.scenario} ≥ ${minimum * 100}% of ${row.ceiling!.name} ` +
      `(${format((100 * row.result.requestsPerSecond) / row.ceiling!.requestsPerSecond)}%)`,
  )

let database: TestDatabase | undefined
let redisPrefix: string | undefined
const redisUrl = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'

async function cleanUp(): Promise<void> {
  for (const child of children) child.kill('SIGKILL')
  for (const server of servers) await server.stop('SIGKILL')
  await database?.drop()
  if (redisPrefix) {
    const client = createClient({ url: redisUrl })
    await client.connect()
    for await (const keys of client.scanIterator({ MATCH: `${redisPrefix}*`, COUNT: 1000 })) {
      if (keys.length > 0) await client.del(keys)
    }
    client.destroy()
  }
}

async function main(): Promise<string> {
  database = await createTestDatabase()
  const redis = await sharedRedis()
  redisPrefix = redis.prefix
  const client = new pg.Client({ connectionString: database.url })
  await client.connect()
  const cachedEnv = { DATABASE_URL: database.url, REDIS_URL: redisUrl, CACHE_PREFIX: redis.prefix }

  let api = await startApi(cachedEnv, false)
  await insertUsers(client, 1, users)
  await cacheSettled(api.url)
  const page = await firstLoad(api.url)
  const userAnswer = await fetch(`${api.url}/users/1`)
  const pageAnswer = await fetch(`${api.url}/users?limit=100`)
  const userBody = await userAnswer.text()
  const pageBody = await pageAnswer.text()
  const versions = {
    node: process.version,
    postgres: (await client.query('SHOW server_version')).rows[0].server_version as string,
    redis: '',
  }
  const redisClient = createClient({ url: redisUrl })
  await redisClient.connect()
  versions.redis = /redis_version:(\S+)/.exec(await redisClient.info('server'))![1]!
  const ceilingKeys = { user: `${redis.prefix}ceiling:user`, page: `${redis.prefix}ceiling:page` }
  await redisClient.set(ceilingKeys.user, userBody)
  await redisClient.set(ceilingKeys.page, pageBody)
  redisClient.destroy()

  const getById: Traffic = { kind: 'get-random-id', maxId: users }
  const listPages: Traffic = { kind: 'list-random-cursor', maxId: users, limit: 100 }
  const rename: Traffic = { kind: 'rename-random-id', maxId: users }
  const mix: Traffic = { kind: 'read-write-mix', maxId: users, writePercent: 10 }
  const ceilingEnv = { BENCH_DATABASE_URL: database.url, BENCH_REDIS_URL: redisUrl }
  // The read ceilings answer with the API's headers (request id, security headers, ETag, Link): the load
  // generator's work per answer, about 6 µs of CPU more for the API's than for a content type alone, is then the
  // same on both sides of a ratio, and the ceiling pays for writing them too.
  const userEnv = { ...ceilingEnv, BENCH_REDIS_KEY: ceilingKeys.user, BENCH_RESPONSE_HEADERS: responseHeaders(userAnswer) }
  const pageEnv = { ...ceilingEnv, BENCH_REDIS_KEY: ceilingKeys.page, BENCH_RESPONSE_HEADERS: responseHeaders(pageAnswer) }

  const everyUser: Traffic = { kind: 'get-each-id', maxId: users }
  const everyPage: Traffic = { kind: 'list-each-cursor', maxId: users, limit: 100 }
  await measureCeiling('node:http, fixed JSON', 'http', {}, getById)
  const fastifyRedisUser = await measureCeiling('bare Fastify + node-redis GET, user-sized', 'fastify-redis-get', userEnv, getById)
  await prefill(api.url, everyUser)
  const redisUser = ceilingServer('node-redis GET, user-sized', 'redis-get', userEnv, getById)
  const cachedGet = await measureApi(api, 'cached GET /users/{id}', getById, redisUser)
  await prefill(api.url, everyPage)
  const redisPage = ceilingServer('node-redis GET, page-sized', 'redis-get', pageEnv, listPages)
  const cachedList = await measureApi(api, 'cached GET /users?limit=100', listPages, redisPage)
  const insert = ceilingServer('pg INSERT', 'pg-insert', ceilingEnv, { kind: 'create-unique', tag: 'ceiling' })
  const create = await measureApi(api, 'POST /users', { kind: 'create-unique', tag: 'api' }, insert)
  const update = ceilingServer('pg UPDATE by id', 'pg-update', ceilingEnv, rename)
  const patch = await measureApi(api, 'PATCH /users/{id}', rename, update)
  await prefill(api.url, everyUser)
  await measureApi(api, '90% GET /users/{id}, 10% PATCH', mix, redisUser)
  const cachedRead = async (pass: number) => {
    await prefill(api.url, everyUser)
    return measureApi(api, `pass ${pass}: cached GET /users/{id}`, getById, redisUser)
  }
  /** The rest of a pass; the RSS after it. */
  const listAndMix = async (pass: number) => {
    await prefill(api.url, everyPage)
    await measureApi(api, `pass ${pass}: cached GET /users?limit=100`, listPages, redisPage)
    await prefill(api.url, everyUser)
    return (await measureApi(api, `pass ${pass}: 90% GET, 10% PATCH`, mix, redisUser)).rssMb!
  }
  // Rate limiting as it ships (on by default), counters in Redis; one client, so a limit no load reaches. Set beside
  // the cached read of the last pass, measured right before it.
  const rateLimitedApi = await startApi({ ...cachedEnv, RATE_LIMIT_MAX: '1000000000' })
  await prefill(rateLimitedApi.url, everyUser)
  await cachedRead(2)
  const passes = [await listAndMix(2)]
  const unlimited = await cachedRead(3)
  const rateLimited = await measureApi(rateLimitedApi, 'cached GET /users/{id}, rate limiter on (counters in Redis)', getById, {
    name: `${unlimited.scenario} (above)`,
    requestsPerSecond: unlimited.result.requestsPerSecond,
  })
  passes.push(await listAndMix(3))
  await stopApi(rateLimitedApi)
  await stopApi(api)

  api = await startApi({ ...cachedEnv, CACHE_ENABLED: 'false' })
  const select = ceilingServer('pg SELECT by id', 'pg-select', userEnv, getById)
  const uncachedGet = await measureApi(api, 'uncached GET /users/{id}', getById, select)
  let deep: { first: Row; last: Row; search: Row } | undefined
  if (!skipDeep) {
    const { rows: [{ count }] } = await client.query('SELECT count(*)::int AS count FROM users')
    const { rows: [{ max }] } = await client.query('SELECT max(id) AS max FROM users')
    await insertUsers(client, max + 1, max + deepUsers - count)
    const { rows: [{ last }] } = await client.query('SELECT max(id) AS last FROM users')
    deep = {
      first: await measureApi(api, `uncached first page at ${format(deepUsers)} users`, { kind: 'get', path: '/users?limit=100' }),
      last: await measureApi(api, `uncached page near the end at ${format(deepUsers)} users`, {
        kind: 'get',
        path: `/users?limit=100&after=${last - 150}`,
      }),
      search: await measureApi(api, `uncached GET ${searchPath} at ${format(deepUsers)} users`, searchTraffic),
    }
  }
  await stopApi(api)

  api = await startApi({ ...cachedEnv, WEB_CONCURRENCY: '2' })
  await prefill(api.url, everyUser)
  const twoWorkers = await measureApi(api, 'cached GET /users/{id}, 2 workers', getById, redisUser)
  delete twoWorkers.rssMb
  await stopApi(api)
  await client.end()

  const apiRows = rows.filter((row) => !row.scenario.startsWith('ceiling') && row !== twoWorkers)
  const cachedReads = [cachedGet, cachedList, rateLimited]
  const targets = [
    ratioTarget(cachedGet, 0.8),
    ratioTarget(cachedList, 0.7),
    ratioTarget(uncachedGet, 0.8),
    ratioTarget(create, 0.9),
    ratioTarget(patch, 0.9),
    ratioTarget(rateLimited, 0.7),
    target(
      cachedReads.every((row) => row.result.p99Ms <= 10),
      `p99 ≤ 10 ms for cached reads at ${connections} connections (${cachedReads.map((row) => format(row.result.p99Ms, 1)).join(', ')} ms)`,
    ),
    deep
      ? target(
          deep.last.result.p50Ms <= 1.5 * Math.max(deep.first.result.p50Ms, 1),
          `page near the end p50 ${format(deep.last.result.p50Ms, 1)} ms within 1.5× of the first page's ` +
            `${format(deep.first.result.p50Ms, 1)} ms (autocannon reports whole milliseconds)`,
        )
      : '- (skipped) deep page at 1,000,000 users',
    deep
      ? target(
          deep.search.result.requestsPerSecond >= deep.first.result.requestsPerSecond,
          `${deep.search.scenario} as fast as the first page: ${format(deep.search.result.requestsPerSecond)} requests/s, ` +
            `${format((100 * deep.search.result.requestsPerSecond) / deep.first.result.requestsPerSecond)}% of the first page's`,
        )
      : '- (skipped) search at 1,000,000 users',
    target(
      page.bytes <= firstLoadBudgetBytes,
      `web page first load (HTML + JS + CSS, compressed) ≤ ${format(firstLoadBudgetBytes / 1000)} KB ` +
        `(${format(page.bytes / 1000, 1)} KB: ${page.files.join(', ')})`,
    ),
    target(rows.every((row) => row.result.errors === 0), 'zero errors in every scenario'),
    target(Math.max(...apiRows.map((row) => row.rssMb!)) <= 150, `RSS of the API process ≤ 150 MB (max ${format(Math.max(...apiRows.map((row) => row.rssMb!)))} MB)`),
    target(passes[1]! <= passes[0]! * 1.1, `RSS growth from pass 2 to pass 3 ≤ 10% (${format(passes[0]!)} → ${format(passes[1]!)} MB)`),
    target(
      twoWorkers.result.requestsPerSecond > cachedGet.result.requestsPerSecond,
      `2 workers serve more cached reads than 1 (${format(twoWorkers.result.requestsPerSecond / cachedGet.result.requestsPerSecond, 2)}×; ` +
        `the load generator and Redis share the same ${cpus().length} cores)`,
    ),
  ]

  const ofNodeHttp = (requestsPerSecond: number) => format((100 * requestsPerSecond) / cachedGet.ceiling!.requestsPerSecond)
  const framework = [
    '## The framework alone',
    '',
    `Not a target, for scale: bare Fastify (no hooks, no logger) with the same Redis GET serves ` +
      `${ofNodeHttp(fastifyRedisUser.requestsPerSecond)}% of the node:http ceiling; the API's cached read, ` +
      `${ofNodeHttp(cachedGet.result.requestsPerSecond)}% of it, is ` +
      `${format((100 * cachedGet.result.requestsPerSecond) / fastifyRedisUser.requestsPerSecond)}% of bare Fastify's.`,
  ]

  const firstStart = await measureFirstStart()
  const cpu = cpus()
  return [
    `# Benchmark, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    '',
    `Machine: ${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} cores, ${format(totalmem() / 2 ** 30)} GiB. ` +
      `Node ${versions.node}, PostgreSQL ${versions.postgres}, Redis ${versions.redis}.`,
    `Load: autocannon in its own process, ${connections} connections, ${warmupSeconds} s warm-up then ${durationSeconds} s per scenario. ` +
      `${format(users)} users. API: \`node dist/server.js\`, NODE_ENV=production, LOG_LEVEL=${logLevel}, RATE_LIMIT_MAX=0 unless said, ` +
      `one process unless said; "uncached" is CACHE_ENABLED=false. A ratio's ceiling runs for half the scenario's time right before it and half right after (its row shows both halves averaged), so that the machine's changing load weighs on both alike; the read ceilings (node-redis GET, pg SELECT) answer with the API's own headers, so the load generator reads the same answers from both. Errors count non-2xx answers, socket errors and time-outs. ` +
      `Heap as in the API's Kubernetes pod (memory limit ${pod.memoryLimit}) with the image's flags: \`GLIBC_TUNABLES=${pod.env.GLIBC_TUNABLES} node ${pod.nodeArgs.join(' ')} dist/server.js\`.` +
      (options.env.length > 0 ? ` Added to the API's environment: \`${options.env.join(' ')}\`.` : '') +
      (smoke ? ' SMOKE RUN: numbers mean nothing.' : ''),
    '',
    table(),
    '',
    '## Targets',
    '',
    ...targets,
    '',
    ...framework,
    '',
    ...firstStart,
  ].join('\n')
}

process.on('SIGINT', () => void cleanUp().finally(() => process.exit(130)))
let report: string
try {
  report = await main()
} finally {
  await cleanUp()
}
console.log(report)
await mkdir(options.out, { recursive: true })
const file = join(options.out, `${new Date().toISOString().slice(0, 10)}-${users}-users${smoke ? '-smoke' : ''}.md`)
await writeFile(file, report)
if (!smoke) await writeFile(join(options.out, 'latest.md'), report)
console.log(`saved ${file}`)
