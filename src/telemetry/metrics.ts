import cluster from 'node:cluster'
import type { FastifyInstance } from 'fastify'
import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type PrometheusContentType } from 'prom-client'
import type { ResponseCache } from '../cache/response-cache.js'
import type { Database } from '../database/database.js'
import { HttpProblem } from '../http/problem.js'

export interface MetricsSources {
  database: Database
  cache: ResponseCache
}

/** Messages between a worker answering GET /metrics and the primary that gathers every worker's. */
const metricsRequest = 'fullstack-app:metrics-request'
const metricsReply = 'fullstack-app:metrics-reply'
const clusterReplyTimeoutMs = 3000

interface MetricsReply {
  type: typeof metricsReply
  requestId: number
  text?: string
  error?: string
}

/**
 * The process's registry. In a cluster worker it also answers the primary's requests for its
 * metrics (prom-client's AggregatorRegistry), so that any worker can serve the whole instance's.
 */
function createRegistry({ database, cache }: MetricsSources): Registry {
  const registry = cluster.isWorker ? new AggregatorRegistry<PrometheusContentType>() : new Registry()
  if (cluster.isWorker) AggregatorRegistry.setRegistries(registry)
  collectDefaultMetrics({ register: registry })

  const cacheStats = cache.stats
  new Counter({
    name: 'cache_lookups_total',
    help: 'Response cache lookups by result: hit, miss, or error (Redis failed or was too slow).',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      this.reset()
      this.inc({ result: 'hit' }, cacheStats.hits)
      this.inc({ result: 'miss' }, cacheStats.misses)
      this.inc({ result: 'error' }, cacheStats.errors)
    },
  })
  new Gauge({
    name: 'cache_degraded',
    help: '1 while the shared cache cannot be used and reads go to the database.',
    registers: [registry],
    collect() {
      this.set(cache.health() === 'degraded' ? 1 : 0)
    },
  })

  const { pool } = database
  new Gauge({
    name: 'db_pool_connections',
    help: 'Database pool connections: in use by a query, or idle.',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.set({ state: 'in_use' }, pool.totalCount - pool.idleCount)
      this.set({ state: 'idle' }, pool.idleCount)
    },
  })
  new Gauge({
    name: 'db_pool_waiting_requests',
    help: 'Queries waiting for a free database connection.',
    registers: [registry],
    collect() {
      this.set(pool.waitingCount)
    },
  })
  return registry
}

let nextRequestId = 0

/** The metrics of every worker of this instance, summed by the primary (see serveClusterMetrics). */
function clusterMetrics(): Promise<string> {
  const requestId = nextRequestId++
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish({ type: metricsReply, requestId, error: 'the primary did not answer' }), clusterReplyTimeoutMs)
    function finish(reply: MetricsReply) {
      clearTimeout(timer)
      process.off('message', onMessage)
      if (reply.text === undefined) reject(new Error(reply.error))
      else resolve(reply.text)
    }
    function onMessage(message: Partial<MetricsReply>) {
      if (message.type === metricsReply && message.requestId === requestId) finish(message as MetricsReply)
    }
    process.on('message', onMessage)
    process.send!({ type: metricsRequest, requestId })
  })
}

/** In the primary: answers workers that ask for the metrics of all of them. */
export function serveClusterMetrics(): void {
  const aggregator = new AggregatorRegistry()
  cluster.on('message', (worker, message: { type?: string; requestId?: number }) => {
    if (message.type !== metricsRequest) return
    const reply = (fields: Partial<MetricsReply>) => worker.send({ type: metricsReply, requestId: message.requestId, ...fields })
    aggregator.clusterMetrics().then(
      (text) => reply({ text }),
      (error: Error) => reply({ error: error.message }),
    )
  })
}

/**
 * GET /metrics in the Prometheus text format: request durations by route and status, the response
 * cache, the database pool, and the process (memory, CPU, event-loop lag, garbage collection).
 */
export function registerMetrics(app: FastifyInstance, sources: MetricsSources): void {
  const registry = createRegistry(sources)
  const requestDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time to answer HTTP requests, by method, route and status.',
    labelNames: ['method', 'route', 'status_code'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  })

  // Synchronous: an async hook costs every request a promise and a turn of the microtask queue.
  app.addHook('onResponse', (request, reply, done) => {
    // Unknown paths share one label, so a scan of random URLs cannot create new series.
    const route = request.routeOptions.url ?? 'unmatched'
    requestDuration.observe({ method: request.method, route, status_code: reply.statusCode }, reply.elapsedTime / 1000)
    done()
  })

  app.get(
    '/metrics',
    { schema: { tags: ['operations'], summary: 'Metrics in the Prometheus text format' } },
    async (request, reply) => {
      let text: string
      try {
        text = cluster.isWorker ? await clusterMetrics() : await registry.metrics()
      } catch (error) {
        request.log.error({ err: error }, 'metrics could not be gathered')
        throw new HttpProblem(503, 'The metrics could not be gathered; try again.', '/problems/metrics-unavailable', {
          'retry-after': '1',
        })
      }
      return reply.type(registry.contentType).send(text)
    },
  )
}
