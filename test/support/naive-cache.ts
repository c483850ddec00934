import { createClient } from 'redis'
import type { CacheHealth, CacheStats, ResponseCache } from '../../src/cache/response-cache.js'

/**
 * The textbook cache-aside: delete on write. It has the race the real cache closes (a reader that
 * missed before a write stores pre-write data after it); the tests run against it to show they can
 * see that race.
 */
export class NaiveRedisCache implements ResponseCache {
  readonly backend = 'redis'
  readonly stats: CacheStats = { hits: 0, misses: 0, errors: 0 }
  private readonly client

  constructor(
    url: string,
    private readonly prefix: string,
  ) {
    this.client = createClient({ url })
    this.client.on('error', () => {})
  }

  async connect(): Promise<this> {
    await this.client.connect()
    return this
  }

  async read(scope: string, variant: string, load: () => Promise<string | undefined>) {
    const key = `${this.prefix}${scope}:${variant}`
    const cached = await this.client.get(key)
    if (cached !== null) {
      this.stats.hits++
      return cached
    }
    this.stats.misses++
    const value = await load()
    if (value !== undefined) await this.client.set(key, value, { expiration: { type: 'EX', value: 300 } })
    return value
  }

  async invalidate(scopes: string[]): Promise<void> {
    for (const scope of scopes) {
      const keys = await this.client.keys(`${this.prefix}${scope}:*`)
      if (keys.length > 0) await this.client.del(keys)
    }
  }

  health(): CacheHealth {
    return 'ok'
  }

  async close(): Promise<void> {
    this.client.destroy()
  }
}

/** Lets every load take `delayMs` longer before its value reaches the cache: a slow reader. */
export function withSlowFills(cache: ResponseCache, delayMs: number): ResponseCache {
  return {
    backend: cache.backend,
    stats: cache.stats,
    read: (scope, variant, load, options) =>
      cache.read(
        scope,
        variant,
        async () => {
          const value = await load()
          await new Promise((resolve) => setTimeout(resolve, delayMs))
          return value
        },
        options,
      ),
    invalidate: (scopes) => cache.invalidate(scopes),
    health: () => cache.health(),
    close: () => cache.close(),
  }
}
