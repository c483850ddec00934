import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { createClient } from 'redis'
import { freePort } from './process.js'

export const sharedRedisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

async function ping(url: string): Promise<boolean> {
  const client = createClient({ url, socket: { connectTimeout: 1000, reconnectStrategy: false } })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.ping()
    return true
  } catch {
    return false
  } finally {
    if (client.isOpen) client.destroy()
  }
}

/**
 * The shared local Redis, checked before use; each caller gets its own key prefix, with an epoch
 * already set as on a Redis that has been serving for a while (a new epoch first settles for a few
 * seconds, during which nothing is cached).
 */
export async function sharedRedis(): Promise<{ url: string; prefix: string }> {
  const prefix = `test-${randomBytes(4).toString('hex')}:`
  const client = createClient({ url: sharedRedisUrl, socket: { connectTimeout: 1000, reconnectStrategy: false } })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.set(`${prefix}epoch`, '1', { expiration: { type: 'EX', value: 3600 } })
  } catch (error) {
    throw new Error(
      `Redis is unreachable at ${sharedRedisUrl}. Start it with 'redis-server --daemonize yes --port 6379 ` +
        `--save "" --appendonly no' or point TEST_REDIS_URL at a running server.`,
      { cause: error },
    )
  } finally {
    if (client.isOpen) client.destroy()
  }
  return { url: sharedRedisUrl, prefix }
}

/** Script calls the Redis at `url` has run so far (EVALSHA, and EVAL when a script was not loaded yet), from INFO commandstats. */
export async function scriptCalls(url: string): Promise<number> {
  const client = createClient({ url })
  await client.connect()
  try {
    const stats = await client.info('commandstats')
    return [...stats.matchAll(/^cmdstat_eval(?:sha)?:calls=(\d+)/gm)].reduce((sum, match) => sum + Number(match[1]), 0)
  } finally {
    client.destroy()
  }
}

export interface OwnRedis {
  url: string
  start(): Promise<void>
  kill(): Promise<void>
  pause(): void
  resume(): void
}

/**
 * A redis-server of the test's own, on a free port, that the test may kill, restart, pause, fill or
 * flush; `args` are more redis-server options, e.g. ['--maxmemory', '2mb'].
 */
export async function ownRedis(args: string[] = []): Promise<OwnRedis> {
  const port = await freePort()
  const url = `redis://127.0.0.1:${port}`
  let child: ChildProcess | undefined
  const redis: OwnRedis = {
    url,
    async start() {
      child = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--enable-debug-command', 'yes', ...args],
        { stdio: 'ignore' },
      )
      child.on('error', () => {})
      const deadline = Date.now() + 10_000
      while (!(await ping(url))) {
        if (child.exitCode !== null || Date.now() > deadline) {
          throw new Error(`redis-server did not start on port ${port}: is it installed (apt-get install redis-server)?`)
        }
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    },
    async kill() {
      if (!child || child.exitCode !== null) return
      const exited = once(child, 'exit')
      child.kill('SIGKILL')
      await exited
    },
    pause: () => void child?.kill('SIGSTOP'),
    resume: () => void child?.kill('SIGCONT'),
  }
  await redis.start()
  return redis
}
