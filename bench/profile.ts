/**
 * `npm run bench:profile -- --scenario cached-get`: what one request costs the API, as CPU time,
 * which other processes on a busy machine change far less than they change requests per second.
 * Starts the built API as `npm run bench` does, fills the cache, sends a fixed number of requests
 * and reports the API process's user + system CPU per request (from /proc), its RSS, and with
 * `--cpu-prof` the share of busy time of the functions and packages that cost most.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { copyFile, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import pg from 'pg'
import { pino } from 'pino'
import { createClient } from 'redis'
import { migrate } from '../src/database/migrations.js'
import { createTestDatabase } from '../test/support/postgres.js'
import { freePort, projectRoot, type ServerProcess } from '../test/support/process.js'
import { sharedRedis } from '../test/support/redis.js'
import { cacheLookups, cacheSettled, type CacheLookups } from './cache-settled.js'
import type { Traffic } from './load.js'
import { podRuntime } from './pod-heap.js'
import { cpuMs, residentMb, treeCpuMs, treeCpuMsBetween } from './process-usage.js'
import { envSettings, insertUsers, scenarios, sendLoad } from './scenarios.js'

const { values: options } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'cached-get' },
    users: { type: 'string', default: '10000' },
    requests: { type: 'string', default: '100000' },
    connections: { type: 'string', default: '64' },
    'cpu-prof': { type: 'boolean', default: false },
    top: { type: 'string', default: '30' },
    /** Copies the .cpuprofile here, to open in Chrome DevTools or speedscope. */
    'save-profile': { type: 'string' },
    /** Another build of the API to compare with, e.g. an older commit: `git archive <commit> | tar -x -C <dir>`, then build it there. */
    'api-dir': { type: 'string', default: projectRoot },
    /** KEY=VALUE settings for the API on top of the scenario's, e.g. `--env LOG_LEVEL=warn`. */
    env: { type: 'string', multiple: true, default: [] },
  },
})
const users = Number(options.users)
const requests = Number(options.requests)

const scenario = scenarios(users)[options.scenario!]
if (!scenario) throw new Error(`--scenario must be one of ${Object.keys(scenarios(users)).join(', ')}`)

const send = (url: string, traffic: Traffic, count: number) =>
  sendLoad({ url, traffic, connections: Number(options.connections), warmupSeconds: 0, durationSeconds: 0, requests: count })

/** Read and write system calls of a process so far (/proc/<pid>/io: syscr, syscw). */
async function syscalls(pid: number): Promise<{ reads: number; writes: number }> {
  const io = await readFile(`/proc/${pid}/io`, 'utf8')
  return { reads: Number(/^syscr: (\d+)/m.exec(io)![1]), writes: Number(/^syscw: (\d+)/m.exec(io)![1]) }
}

/** The V8 heap in MB, as GET /metrics reports it: committed (total) and live (used) of every space, and the young generation's share. */
async function heapMb(url: string): Promise<{ total: number; used: number; young: number } | undefined> {
  if (scenario!.ceiling) return undefined
  const text = await (await fetch(`${url}/metrics`)).text()
  const gauge = (name: string) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? NaN) / 2 ** 20
  const young = ['new', 'new_large_object'].map((space) =>
    Number(new RegExp(`^nodejs_heap_space_size_total_bytes\\{space="${space}"\\} (\\S+)`, 'm').exec(text)?.[1] ?? 0),
  )
  return { total: gauge('nodejs_heap_size_total_bytes'), used: gauge('nodejs_heap_size_used_bytes'), young: (young[0]! + young[1]!) / 2 ** 20 }
}

type GcKind = 'minor' | 'major' | 'incremental'

/** Garbage collections so far by kind, their number and seconds (GET /metrics); undefined for a ceiling. */
async function garbageCollections(url: string): Promise<Record<GcKind, { count: number; seconds: number }> | undefined> {
  if (scenario!.ceiling) return undefined
  const text = await (await fetch(`${url}/metrics`)).text()
  const read = (kind: GcKind, part: 'count' | 'sum') =>
    Number(new RegExp(`^nodejs_gc_duration_seconds_${part}\\{kind="${kind}"\\} (\\S+)`, 'm').exec(text)?.[1] ?? 0)
  const kinds: GcKind[] = ['minor', 'major', 'incremental']
  return Object.fromEntries(kinds.map((kind) => [kind, { count: read(kind, 'count'), seconds: read(kind, 'sum') }])) as Record<
    GcKind,
    { count: number; seconds: number }
  >
}

/** The API's cache lookups by result so far; undefined for a ceiling. */
const lookupsOf = (url: string): Promise<CacheLookups | undefined> => (scenario!.ceiling ? Promise.resolve(undefined) : cacheLookups(url))

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount: number
}

interface Profile {
  nodes: ProfileNode[]
  startTime: number
  samples: number[]
  timeDeltas: number[]
}

/**
 * Self time by function and by package, as shares of the busy (non-idle) samples taken from `fromMicros`
 * on (V8 and process.hrtime share the monotonic clock): the measured pass only, not the start or the fill.
 */
function summarize(profile: Profile, top: number, fromMicros: number): string {
  const hits = new Map<number, number>()
  let time = profile.startTime
  profile.samples.forEach((id, index) => {
    time += profile.timeDeltas[index]!
    if (time >= fromMicros) hits.set(id, (hits.get(id) ?? 0) + 1)
  })
  const byFunction = new Map<string, number>()
  const byPackage = new Map<string, number>()
  let busy = 0
  for (const { id, callFrame } of profile.nodes) {
    const hitCount = hits.get(id) ?? 0
    if (hitCount === 0 || callFrame.functionName === '(idle)' || callFrame.functionName === '(program)') continue
    busy += hitCount
    const url = callFrame.url.replace(/^file:\/\//, '').replace(projectRoot, '')
    const where = url ? `${url}:${callFrame.lineNumber + 1}` : ''
    const name = `${callFrame.functionName || '(anonymous)'} ${where}`.trim()
    byFunction.set(name, (byFunction.get(name) ?? 0) + hitCount)
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ?? (url.startsWith('node:') ? 'node internals' : url.startsWith('dist/') ? url : url ? 'other' : callFrame.functionName)
    byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + hitCount)
  }
  const rows = (map: Map<string, number>) =>
    [...map].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, hits]) => `| ${((100 * hits) / busy).toFixed(1)} % | \`${name}\` |`)
  return ['| busy | package or file |', '| ---: | --- |', ...rows(byPackage), '', '| busy | function (self time) |', '| ---: | --- |', ...rows(byFunction)].join('\n')
}

/** The built API as startServerProcess starts it, under `node --cpu-prof` when asked. */
async function startApi(env: NodeJS.ProcessEnv): Promise<ServerProcess> {
  const port = await freePort()
  const profiling = options['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []
  const pod = scenario!.ceiling ? { nodeArgs: [], env: {} } : await podRuntime(env.NODE_OPTIONS)
  const program = scenario!.ceiling ? ['--import', 'tsx', 'bench/ceilings.ts', scenario!.ceiling, String(port)] : [...pod.nodeArgs, 'dist/server.js']
  const child = spawn(process.execPath, [...profiling, ...program], {
    cwd: scenario!.ceiling ? projectRoot : options['api-dir'],
    env: { PATH: process.env.PATH, NODE_ENV: 'production', ...pod.env, ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  // The access log goes down a pipe, as it does to a container's log collector, and is dropped here.
  let output = ''
  child.stdout!.on('data', (chunk: Buffer) => void (scenario!.ceiling && (output += chunk)))
  const exited = once(child, 'exit')
  const url = `http://127.0.0.1:${port}`
  const ready = () => (scenario!.ceiling ? Promise.resolve(output.includes('ready\n')) : fetch(`${url}/readyz`).then((answer) => answer.ok, () => false))
  while (!(await ready())) {
    if (child.exitCode !== null) throw new Error(`the API exited with ${child.exitCode}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return {
    child,
    url,
    output: () => '',
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal)
      return (await exited)[0] as number | null
    },
  }
}

/** The local process of a service (its process id, when /proc shows it as `command`), whose CPU time can be read. */
async function localProcess(pid: number, command: string): Promise<number | undefined> {
  const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')
  return comm.startsWith(command) ? pid : undefined
}

/** Redis's process and PostgreSQL's postmaster (the parent of every backend), by name, those that run on this machine. */
async function serviceProcesses(databaseUrl: string, redisUrl: string): Promise<[name: string, pid: number][]> {
  const redisClient = createClient({ url: redisUrl })
  await redisClient.connect()
  const redisPid = Number(/process_id:(\d+)/.exec(await redisClient.info('server'))?.[1])
  redisClient.destroy()
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  const backend = Number((await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid)
  const postmaster = Number((await readFile(`/proc/${backend}/stat`, 'utf8').catch(() => '')).split(') ')[1]?.split(' ')[1])
  await client.end()
  const local: [string, number | undefined][] = [
    ['Redis', await localProcess(redisPid, 'redis')],
    ['PostgreSQL', await localProcess(postmaster, 'postgres')],
  ]
  return local.filter((service): service is [string, number] => service[1] !== undefined)
}

/** The users table, as the API would create it, with `users` users in it. */
async function migrateAndFill(url: string): Promise<void> {
  const pool = new pg.Pool({ connectionString: url, max: 1 })
  try {
    await migrate(pool, pino({ level: 'warn' }))
    const client = await pool.connect()
    await insertUsers(client, 1, users).finally(() => client.release())
  } finally {
    await pool.end()
  }
}

const database = await createTestDatabase()
const redis = await sharedRedis()
const profileDir = await mkdtemp(join(tmpdir(), 'fullstack-profile-'))
let api: ServerProcess | undefined
try {
  if (scenario.ceiling) {
    const key = `${redis.prefix}ceiling:value`
    const user = (id: number) => ({
      id,
      name: `User ${id}`,
      email: `user-${id}@bench.example.com`,
      created_at: '2026-01-01T00:00:00.000Z',
      updated_at: '2026-01-01T00:00:00.000Z',
    })
    const value = scenario.ceilingValue === 'page' ? Array.from({ length: 100 }, (_, index) => user(4711 + index)) : user(4711)
    const writer = createClient({ url: redis.url })
    await writer.connect()
    await writer.set(key, JSON.stringify(value))
    writer.destroy()
    if (scenario.ceiling.startsWith('pg-')) await migrateAndFill(database.url)
    api = await startApi({ BENCH_REDIS_URL: redis.url, BENCH_REDIS_KEY: key, BENCH_DATABASE_URL: database.url })
  } else {
    api = await startApi({
      DATABASE_URL: database.url,
      REDIS_URL: redis.url,
      CACHE_PREFIX: redis.prefix,
      RATE_LIMIT_MAX: '0',
      API_WRITES_OPEN: 'true',
      LOG_LEVEL: 'info',
      ...scenario.env,
      ...envSettings(options.env),
    })
    const client = new pg.Client({ connectionString: database.url })
    await client.connect()
    await insertUsers(client, 1, users)
    await client.end()
    if (scenario.env.CACHE_ENABLED !== 'false') await cacheSettled(api.url)
    if (scenario.fill) await send(api.url, scenario.fill, users)
  }
  // A first pass lets V8 optimize the hot paths; only the second is counted.
  await send(api.url, scenario.traffic, Math.min(requests, 20_000))
  const pid = api.child.pid!
  const before = await cpuMs(pid)
  const callsBefore = await syscalls(pid)
  const lookupsBefore = await lookupsOf(api.url)
  const collectionsBefore = await garbageCollections(api.url)
  const services = await serviceProcesses(database.url, redis.url)
  const serviceUsage = () => Promise.all(services.map(([, pid]) => treeCpuMs(pid)))
  const servicesBefore = await serviceUsage()
  const measuredFromMicros = Number(process.hrtime.bigint() / 1000n)
  const startedAt = performance.now()
  const loadCpu = (await send(api.url, scenario.traffic, requests))!
  const seconds = (performance.now() - startedAt) / 1000
  const cpu = (await cpuMs(pid)) - before
  const servicesAfter = await serviceUsage()
  const serviceCpu = services.map(([name], index) => ({ name, ms: treeCpuMsBetween(servicesBefore[index]!, servicesAfter[index]!) }))
  const calls = await syscalls(pid)
  const lookups = await lookupsOf(api.url)
  const collections = await garbageCollections(api.url)
  const rss = await residentMb(pid)
  const heap = await heapMb(api.url)
  await api.stop()
  api = undefined
  console.log(`## ${options.scenario}: ${requests.toLocaleString('en-US')} requests, ${options.connections} connections\n`)
  console.log(`- API CPU per request: ${((1000 * cpu) / requests).toFixed(1)} µs (user + system, ${cpu} ms in all)`)
  const micros = (ms: number) => `${((1000 * ms) / requests).toFixed(1)} µs`
  const shares = [`the load generator ${micros(loadCpu)}`, ...serviceCpu.map(({ name, ms }) => `${name} ${micros(ms)}`)]
  const machineCpu = serviceCpu.reduce((sum, { ms }) => sum + ms, cpu + loadCpu)
  console.log(`- and per request: ${shares.join(', ')}; the whole machine ${micros(machineCpu)} (what sets throughput once every core is busy)`)
  const perRequest = (count: number) => (count / requests).toFixed(2)
  console.log(`- system calls per request: ${perRequest(calls.reads - callsBefore.reads)} reads, ${perRequest(calls.writes - callsBefore.writes)} writes`)
  if (lookups) console.log(`- cache: ${lookups.hit - lookupsBefore!.hit} hits, ${lookups.miss - lookupsBefore!.miss} misses, ${lookups.error - lookupsBefore!.error} errors`)
  console.log(`- wall clock: ${(requests / seconds).toFixed(0)} requests/s (noisy on a shared machine)`)
  if (collections) {
    const gc = (Object.keys(collections) as GcKind[]).map((kind) => {
      const count = collections[kind].count - collectionsBefore![kind].count
      return `${count} ${kind} (${(1000 * (collections[kind].seconds - collectionsBefore![kind].seconds)).toFixed(0)} ms)`
    })
    console.log(`- garbage collections: ${gc.join(', ')}`)
  }
  console.log(`- RSS after: ${rss.toFixed(0)} MB`)
  if (heap) console.log(`- V8 heap after: ${heap.total.toFixed(0)} MB committed (young generation ${heap.young.toFixed(0)} MB), ${heap.used.toFixed(0)} MB in use`)
  if (options['cpu-prof']) {
    const [file] = (await readdir(profileDir)).filter((name) => name.endsWith('.cpuprofile'))
    if (!file) throw new Error('the API wrote no CPU profile')
    if (options['save-profile']) await copyFile(join(profileDir, file), options['save-profile'])
    console.log(`\n${summarize(JSON.parse(await readFile(join(profileDir, file), 'utf8')), Number(options.top), measuredFromMicros)}`)
  }
} finally {
  await api?.stop('SIGKILL')
  await database.drop()
  const cleaner = createClient({ url: redis.url })
  await cleaner.connect()
  for await (const keys of cleaner.scanIterator({ MATCH: `${redis.prefix}*`, COUNT: 1000 })) if (keys.length > 0) await cleaner.del(keys)
  cleaner.destroy()
  await rm(profileDir, { recursive: true, force: true })
}
