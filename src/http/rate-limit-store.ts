import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import type { Logger } from 'pino'
import { createClient, defineScript } from 'redis'
import { resilientClientOptions, withDeadline } from '../cache/redis-connection.js'

/** One fixed window per client: the first request of a window starts its expiry. */
const countScript = defineScript({
  NUMBER_OF_KEYS: 1,
  SCRIPT: `
local current = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  ttl = tonumber(ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return { current, ttl }`,
  parseCommand(parser, key: string, windowMs: number) {
    parser.pushKey(key)
    parser.push(String(windowMs))
  },
  transformReply(reply: unknown) {
    const [current, ttl] = reply as [number, number]
    return { current, ttl }
  },
})

export interface RedisRateLimitCounters {
  /** The store class @fastify/rate-limit instantiates. */
  Store: FastifyRateLimitStoreCtor
  close(): Promise<void>
}

/**
 * Rate-limit counters in Redis, shared by every instance and worker process. Like the cache, Redis
 * never holds a request up: while it is away or slower than `timeoutMs`, counting fails and the
 * plugin lets the request through (`skipOnError`), and the change of state is logged once.
 */
export function redisRateLimitCounters(url: string, keyPrefix: string, timeoutMs: number, logger: Logger): RedisRateLimitCounters {
  const client = createClient({ ...resilientClientOptions(url, timeoutMs), scripts: { count: countScript } })
  let available = true
  const report = (now: boolean, error?: Error) => {
    if (now === available) return
    available = now
    if (now) logger.info('rate-limit counters available again')
    else logger.warn({ err: error }, 'rate-limit counters unavailable: requests are not limited until Redis is back')
  }
  client.on('error', (error: Error) => report(false, error))
  client.on('ready', () => report(true))
  const connecting = client.connect().catch((error: Error) => report(false, error))

  const store: FastifyRateLimitStore = {
    incr(key, callback, timeWindow) {
      withDeadline(() => client.count(`${keyPrefix}${key}`, timeWindow), timeoutMs).then(
        (counted) => {
          report(true)
          callback(null, counted)
        },
        (error: Error) => {
          report(false, error)
          callback(error)
        },
      )
    },
    child: () => store,
  }
  return {
    Store: function RedisRateLimitStore() {
      return store
    } as unknown as FastifyRateLimitStoreCtor,
    async close() {
      await withDeadline(() => connecting, timeoutMs).catch(() => {})
      if (client.isReady) await withDeadline(() => client.close(), timeoutMs).catch(() => client.destroy())
      else if (client.isOpen) client.destroy()
    },
  }
}
