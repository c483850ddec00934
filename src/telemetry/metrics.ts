import cluster from 'node:cluster'
import type { FastifyInstance } from 'fastify'
import { AggregatorRegistry, collectDefaultMetrics, Counter, Gauge, Registry, type Metric, type PrometheusContentType } from 'prom-client'
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

interface Series {
  labels: { method: string; route: string; status_code: number }
  /** Observations per bucket, not cumulative; the last counts those above every bound. */
  counts: Float64Array
  sum: number
  count: number
}

/**
 * A histogram of request durations by method, route and status, exposed as prom-client's Histogram
 * exposes one (same names, labels and series order, also when a cluster's primary sums the workers').
 * Its observe() validates and hashes the label object on every request; here a series is found
 * through nested maps and counted in a typed array.
 */
class RequestDurations {
  readonly name = 'http_request_duration_seconds'
  readonly help = 'Time to answer HTTP requests, by method, route and status.'
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  private readonly buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
  private readonly byRoute = new Map<string, Map<string, Map<number, Series>>>()
  /** In the order they were first observed, as prom-client lists them. */
  private readonly series: Series[] = []

  observe(method: string, route: string, statusCode: number, seconds: number): void {
    let byMethod = this.byRoute.get(route)
    if (!byMethod) this.byRoute.set(route, (byMethod = new Map()))
    let byStatus = byMethod.get(method)
    if (!byStatus) byMethod.set(method, (byStatus = new Map()))
    let series = byStatus.get(statusCode)
    if (!series) {
      series = { labels: { method, route, status_code: statusCode }, counts: new Float64Array(this.buckets.length + 1), sum: 0, count: 0 }
      byStatus.set(statusCode, series)
      this.series.push(series)
    }
    let bucket = 0
    while (bucket < this.buckets.length && seconds > this.buckets[bucket]!) bucket++
    series.counts[bucket]!++
    series.sum += seconds
    series.count++
  }

  /** The metric as prom-client's Registry and AggregatorRegistry read it. */
  async get() {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = []
    for (const { labels, counts, sum, count } of this.series) {
      let cumulative = 0
      this.buckets.forEach((le, bucket) => {
        cumulative += counts[bucket]!
        values.push({ labels: { le, ...labels }, value: cumulative, metricName: `${this.name}_bucket` })
      })
      values.push(
        { labels: { le: '+Inf', ...labels }, value: count, metricName: `${this.name}_bucket` },
        { labels: { ...labels }, value: sum, metricName: `${this.name}_sum` },
        { labels: { ...labels }, value: count, metricName: `${this.name}_count` },
      )
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator }
  }
}

/**
 * GET /metrics in the Prometheus text format: request durations by route and status, the response
 * cache, the database pool, and the process (memory, CPU, event-loop lag, garbage collection).
 */
export function registerMetrics(app: FastifyInstance, sources: MetricsSources): void {
  const registry = createRegistry(sources)
  const requestDurations = new RequestDurations()
  registry.registerMetric(requestDurations as unknown as Metric)

  // Synchronous: an async hook costs every request a promise and a turn of the microtask queue.
  app.addHook('onResponse', (request, reply, done) => {
    // Unknown paths share one label, so a scan of random URLs cannot create new series.
    const route = request.routeOptions.url ?? 'unmatched'
    requestDurations.observe(request.method, route, reply.statusCode, reply.elapsedTime / 1000)
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
