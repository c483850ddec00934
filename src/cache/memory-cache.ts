import { LRUCache } from 'lru-cache'
import { GenerationalCache, generationSlackSeconds, type CacheHealth } from './response-cache.js'

/** The in-process backend, for a single instance without Redis. */
export class MemoryCache extends GenerationalCache {
  readonly backend = 'memory'
  private readonly entries: LRUCache<string, string>
  private readonly generations: LRUCache<string, number>
  private clock = 0

  constructor(ttlSeconds: number, maxEntries: number) {
    super()
    this.entries = new LRUCache({ max: maxEntries, ttl: ttlSeconds * 1000 })
    this.generations = new LRUCache({ ttl: (ttlSeconds + generationSlackSeconds) * 1000, ttlAutopurge: true })
  }

  protected async lookup(scope: string, variant: string) {
    const key = `${scope}:${this.generations.get(scope) ?? 0}:${variant}`
    return { key, value: this.entries.get(key), readAt: Date.now() }
  }

  protected store(key: string, value: string): void {
    this.entries.set(key, value)
  }

  async invalidate(scopes: string[]): Promise<void> {
    for (const scope of scopes) this.generations.set(scope, ++this.clock)
  }

  health(): CacheHealth {
    return 'ok'
  }

  async close(): Promise<void> {
    this.entries.clear()
    this.generations.clear()
  }
}
