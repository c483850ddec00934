import type { Logger } from 'pino'
import type { Settings } from '../config/settings.js'
import { MemoryCache } from './memory-cache.js'
import { RedisCache } from './redis-cache.js'
import { NoCache, type ResponseCache } from './response-cache.js'

/** Redis when REDIS_URL is set, else an in-process cache; none when CACHE_ENABLED=false. */
export function openCache(settings: Settings['cache'], logger: Logger): ResponseCache {
  if (!settings.enabled) return new NoCache()
  if (!settings.redisUrl) return new MemoryCache(settings.ttlSeconds, settings.maxEntries)
  const cache = new RedisCache(
    { url: settings.redisUrl, prefix: settings.prefix, ttlSeconds: settings.ttlSeconds, timeoutMs: settings.timeoutMs },
    logger,
  )
  cache.start()
  return cache
}
