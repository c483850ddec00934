/**
 * The load generator, run as a process of its own so that it does not share an event loop with
 * what it measures: `node --import tsx bench/load.ts '<LoadSpec as JSON>'` prints a LoadResult.
 */
import autocannon from 'autocannon'

export type Traffic =
  | { kind: 'get'; path: string }
  | { kind: 'get-random-id'; maxId: number }
  | { kind: 'list-random-cursor'; maxId: number; limit: number }
  | { kind: 'get-each-id'; maxId: number }
  | { kind: 'list-each-cursor'; maxId: number; limit: number }
  | { kind: 'create-unique'; tag: string }
  | { kind: 'rename-random-id'; maxId: number }
  | { kind: 'read-write-mix'; maxId: number; writePercent: number }

/** Runs for a warm-up and a duration, or sends `requests` requests and reports nothing. */
export interface LoadSpec {
  url: string
  traffic: Traffic
  connections: number
  warmupSeconds: number
  durationSeconds: number
  requests?: number
}

export interface LoadResult {
  requestsPerSecond: number
  p50Ms: number
  p99Ms: number
  requests: number
  errors: number
}

type Request = Pick<autocannon.Request, 'method' | 'path' | 'headers' | 'body'>

const json = { 'content-type': 'application/json' }
const randomId = (maxId: number) => 1 + Math.floor(Math.random() * maxId)

function requestMaker(traffic: Traffic): () => Request {
  let sequence = 0
  switch (traffic.kind) {
    case 'get':
      return () => ({ method: 'GET', path: traffic.path })
    case 'get-random-id':
      return () => ({ method: 'GET', path: `/users/${randomId(traffic.maxId)}` })
    case 'list-random-cursor':
      return () => ({ method: 'GET', path: `/users?limit=${traffic.limit}&after=${randomId(traffic.maxId) - 1}` })
    case 'get-each-id':
      return () => ({ method: 'GET', path: `/users/${(sequence++ % traffic.maxId) + 1}` })
    case 'list-each-cursor':
      return () => ({ method: 'GET', path: `/users?limit=${traffic.limit}&after=${sequence++ % traffic.maxId}` })
    case 'create-unique':
      return () => {
        const body = JSON.stringify({ name: 'Bench User', email: `${traffic.tag}-${process.pid}-${sequence++}@bench.example.com` })
        return { method: 'POST', path: '/users', headers: json, body }
      }
    case 'rename-random-id':
      return () => ({
        method: 'PATCH',
        path: `/users/${randomId(traffic.maxId)}`,
        headers: json,
        body: JSON.stringify({ name: `Renamed ${sequence++}` }),
      })
    case 'read-write-mix': {
      const read = requestMaker({ kind: 'get-random-id', maxId: traffic.maxId })
      const write = requestMaker({ kind: 'rename-random-id', maxId: traffic.maxId })
      return () => (Math.random() * 100 < traffic.writePercent ? write() : read())
    }
  }
}

const spec = JSON.parse(process.argv[2]!) as LoadSpec
// One maker for the warm-up and the measurement, so that created emails stay unique across both.
const next = requestMaker(spec.traffic)
const run = (length: { duration: number } | { amount: number }) =>
  autocannon({
    url: spec.url,
    connections: spec.connections,
    ...length,
    requests: [{ setupRequest: (request) => ({ ...request, ...next() }) as autocannon.Request }],
  })

if (spec.requests !== undefined) {
  const before = process.cpuUsage()
  await run({ amount: spec.requests })
  const { user, system } = process.cpuUsage(before)
  process.stdout.write(JSON.stringify({ cpuMs: (user + system) / 1000 }))
  process.exit(0)
}
if (spec.warmupSeconds > 0) await run({ duration: spec.warmupSeconds })
const result = await run({ duration: spec.durationSeconds })
const outcome: LoadResult = {
  requestsPerSecond: result.requests.average,
  p50Ms: result.latency.p50,
  p99Ms: result.latency.p99,
  requests: result.requests.total,
  errors: result.errors + result.timeouts + result.non2xx,
}
process.stdout.write(JSON.stringify(outcome))
