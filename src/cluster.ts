import cluster, { type Worker } from 'node:cluster'
import type { Logger } from 'pino'
import type { Settings } from './config/settings.js'
import { openDatabase } from './database/database.js'
import { migrate } from './database/migrations.js'
import { serveClusterMetrics } from './telemetry/metrics.js'

const restartDelayMs = 1000

/**
 * The primary of WEB_CONCURRENCY workers: it migrates once, forks the workers (which share the
 * port), replaces one that crashes, and on SIGTERM or SIGINT lets each finish its in-flight requests
 * before exiting. A worker that exits before it ever listened means the instance cannot start: the
 * primary then stops everything and exits 1, so the supervisor (Docker, systemd) sees it.
 */
export async function superviseWorkers(settings: Settings, logger: Logger): Promise<void> {
  const database = await openDatabase(settings.database, logger)
  try {
    await migrate(database.pool, logger, settings.database)
  } finally {
    await database.close()
  }
  serveClusterMetrics()

  const listening = new WeakSet<Worker>()
  let stopping = false
  let exitCode = 0

  const stop = (reason: Record<string, unknown>, code: number) => {
    if (stopping) return
    stopping = true
    exitCode = code
    logger.info(reason, 'stopping the workers')
    const workers = Object.values(cluster.workers ?? {})
    if (workers.length === 0) process.exit(exitCode)
    for (const worker of workers) worker?.process.kill('SIGTERM')
    setTimeout(() => {
      logger.error({ graceMs: settings.http.shutdownGraceMs }, 'workers did not stop within the grace period')
      process.exit(1)
    }, settings.http.shutdownGraceMs + 2000).unref()
  }

  cluster.on('listening', (worker) => listening.add(worker))
  cluster.on('exit', (worker, code, signal) => {
    const remaining = Object.keys(cluster.workers ?? {}).length
    if (stopping) {
      if (code !== 0) exitCode = 1
      if (remaining === 0) process.exit(exitCode)
      return
    }
    const exited = { workerPid: worker.process.pid, code, signal }
    if (!listening.has(worker)) return stop({ ...exited, reason: 'a worker exited before it listened' }, 1)
    logger.error(exited, 'worker exited; starting another')
    setTimeout(() => stopping || cluster.fork(), restartDelayMs)
  })
  process.on('SIGTERM', (signal) => stop({ signal }, 0))
  process.on('SIGINT', (signal) => stop({ signal }, 0))

  for (let i = 0; i < settings.workers; i++) cluster.fork()
  logger.info({ workers: settings.workers }, 'started workers')
}
