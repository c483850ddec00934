import cluster, { type Worker } from 'node:cluster'
import type { Logger } from 'pino'
import { containerMemoryLimit, nodeOptions, workerHeapFlags } from './config/heap.js'
import type { Settings } from './config/settings.js'
import { exitOnStartupFailure, openMigratedDatabase } from './database/startup.js'
import { serveClusterMetrics } from './telemetry/metrics.js'

const restartDelayMs = 1000

const stoppedAccepting = 'stopped-accepting'
const listenerClosed = 'listener-closed'

const isMessage = (message: unknown, type: string) => (message as { type?: unknown } | null)?.type === type

/**
 * For a worker that has closed its share of the listener: resolves once every worker has, so that the
 * port no longer accepts connections. Until then a worker must not tell clients to reconnect.
 */
export function everyWorkerStoppedAccepting(): Promise<void> {
  return new Promise((resolve) => {
    const onMessage = (message: unknown) => {
      if (!isMessage(message, listenerClosed)) return
      process.off('message', onMessage)
      resolve()
    }
    process.on('message', onMessage)
    process.once('disconnect', resolve)
    process.send!({ type: stoppedAccepting })
  })
}

/**
 * The primary of WEB_CONCURRENCY workers: it migrates once, forks the workers (which share the
 * port), replaces one that crashes, and on SIGTERM or SIGINT lets each finish its in-flight requests
 * before exiting. A worker that exits before it ever listened means the instance cannot start: the
 * primary then stops everything and exits 1, so the supervisor (Docker, systemd) sees it.
 */
export async function superviseWorkers(settings: Settings, logger: Logger): Promise<void> {
  const database = await openMigratedDatabase(settings.database, logger, { migrateIt: true }).catch((error: unknown) =>
    exitOnStartupFailure(error, logger),
  )
  await database.close()
  serveClusterMetrics()

  const listening = new WeakSet<Worker>()
  const closedListeners = new WeakSet<Worker>()
  let stopping = false
  let exitCode = 0

  const releaseOnceListenerClosed = () => {
    const workers = Object.values(cluster.workers ?? {}).filter((worker) => worker !== undefined)
    if (!workers.every((worker) => closedListeners.has(worker))) return
    for (const worker of workers) if (worker.isConnected()) worker.send({ type: listenerClosed })
  }

  const stop = (reason: Record<string, unknown>, code: number) => {
    if (stopping) return
    stopping = true
    exitCode = code
    logger.info(reason, 'stopping the workers')
    const workers = Object.values(cluster.workers ?? {})
    if (workers.length === 0) process.exit(exitCode)
    for (const worker of workers) worker?.process.kill('SIGTERM')
    const { shutdownDelayMs, shutdownGraceMs } = settings.http
    setTimeout(() => {
      logger.error({ shutdownDelayMs, shutdownGraceMs }, 'workers did not stop within the shutdown delay and grace period')
      process.exit(1)
    }, shutdownDelayMs + shutdownGraceMs + 2000).unref()
  }

  cluster.on('listening', (worker) => listening.add(worker))
  cluster.on('exit', (worker, code, signal) => {
    const remaining = Object.keys(cluster.workers ?? {}).length
    if (stopping) {
      if (code !== 0) exitCode = 1
      if (remaining === 0) process.exit(exitCode)
      releaseOnceListenerClosed()
      return
    }
    const exited = { workerPid: worker.process.pid, code, signal }
    if (!listening.has(worker)) return stop({ ...exited, reason: 'a worker exited before it listened' }, 1)
    logger.error(exited, 'worker exited; starting another')
    setTimeout(() => stopping || cluster.fork(), restartDelayMs)
  })
  cluster.on('message', (worker, message) => {
    if (!isMessage(message, stoppedAccepting)) return
    closedListeners.add(worker)
    releaseOnceListenerClosed()
  })
  process.on('SIGTERM', (signal) => stop({ signal }, 0))
  process.on('SIGINT', (signal) => stop({ signal }, 0))

  // Each worker's V8 would otherwise size its heap from the whole container, as if it were alone in it.
  const heapFlags = workerHeapFlags(containerMemoryLimit(), settings.workers, [...process.execArgv, ...nodeOptions()])
  cluster.setupPrimary({ execArgv: [...process.execArgv, ...heapFlags] })
  for (let i = 0; i < settings.workers; i++) cluster.fork()
  logger.info({ workers: settings.workers, heapFlags }, 'started workers')
}
